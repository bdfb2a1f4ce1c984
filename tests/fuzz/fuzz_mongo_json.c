/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz_mongo_json.c: the mongo driver's json fields
 * (plugins/mongo/mongo_json.c, linked in directly): a JSON text read with
 * jansson into BSON (or kept as text), then written back as JSON by the
 * driver's own writer, as a find would read it.
 */
#include "config.h"

#include <mongoc/mongoc.h>

#include <emhost/buf.h>

#include "../../plugins/mongo/mongo_int.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bson_t doc;
	bson_init(&doc);
	emh_error err;
	if (mg_json_append(&doc, "f", (const char *)data, size, "f", &err) == 0) {
		bson_iter_t it;
		if (!bson_iter_init_find(&it, &doc, "f"))
			abort(); /* appended, so it is there */
		emh_buf b = EMH_BUF_INIT;
		mg_json_write(&b, &it);
		emh_buf_release(&b);
	}
	bson_destroy(&doc);
	return 0;
}
