# plugins/mongo: the MongoDB document driver (libmongoc/libbson; jansson reads json fields).
if HAVE_MONGO
plugin_LTLIBRARIES += plugins/mongo/mongo.la
plugins_mongo_mongo_la_SOURCES = plugins/mongo/mongo.c plugins/mongo/mongo_int.h plugins/mongo/mongo_value.c \
	plugins/mongo/mongo_json.c plugins/mongo/mongo_filter.c plugins/mongo/mongo_crud.c plugins/mongo/mongo_schema.c \
	plugins/mongo/mongo_migrate.c
plugins_mongo_mongo_la_CFLAGS = $(AM_CFLAGS) $(MONGOC_CFLAGS)
plugins_mongo_mongo_la_LDFLAGS = $(PLUGIN_LDFLAGS)
plugins_mongo_mongo_la_LIBADD = core/libemhost.la $(MONGOC_LIBS)
endif
