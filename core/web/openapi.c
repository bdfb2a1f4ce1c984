/* SPDX-License-Identifier: MIT */
/*
 * core/web/openapi.c: the OpenAPI 3.1 document of services' declared routes
 * (emh_web_openapi): paths from the route patterns, schemas from the
 * entities' field metadata, the error answers every route may give.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <emhost/web.h>

static bool is_column(const emh_field *f) { return f->type != EMH_T_RELATION; }

static bool field_readonly(const emh_field *f)
{
	return (f->flags & (EMH_F_READONLY | EMH_F_VERSION | EMH_F_FILTER)) ||
	       ((f->flags & EMH_F_PK) && (f->flags & EMH_F_GENERATED));
}

static json_t *field_schema(const emh_field *f, unsigned svc_flags)
{
	json_t *s = json_object();
	const char *type = "string";
	switch (f->type) {
	case EMH_T_BOOL: type = "boolean"; break;
	case EMH_T_INT32:
		type = "integer";
		json_object_set_new(s, "format", json_string("int32"));
		break;
	case EMH_T_INT64:
		type = "integer";
		json_object_set_new(s, "format", json_string("int64"));
		break;
	case EMH_T_DOUBLE: type = "number"; break;
	case EMH_T_TIMESTAMP: json_object_set_new(s, "format", json_string("date-time")); break;
	case EMH_T_BLOB: json_object_set_new(s, "contentEncoding", json_string("base64")); break;
	case EMH_T_JSON: type = NULL; break; /* any JSON value */
	default: break;
	}
	if (type) {
		json_t *t = json_array();
		json_array_append_new(t, json_string(type));
		if (f->type == EMH_T_INT64 && (svc_flags & EMH_SVC_INT64_STRINGS))
			json_array_append_new(t, json_string("string"));
		if (f->flags & EMH_F_NULLABLE)
			json_array_append_new(t, json_string("null"));
		json_object_set_new(s, "type", json_array_size(t) == 1 ? json_incref(json_array_get(t, 0)) : json_incref(t));
		json_decref(t);
	}
	if (f->type == EMH_T_TEXT && f->max_len)
		json_object_set_new(s, "maxLength", json_integer(f->max_len)); /* bytes: at most that many characters */
	return s;
}

/* The schema of e: what answers carry (output), what bodies may hold (input;
 * partial: nothing required). */
static json_t *entity_schema(const emh_entity *e, unsigned svc_flags, bool input, bool partial)
{
	json_t *props = json_object(), *req = json_array();
	for (size_t i = 0; i < e->nfields; i++) {
		const emh_field *f = &e->fields[i];
		if (!is_column(f))
			continue;
		if (input ? field_readonly(f) : (f->flags & EMH_F_HIDDEN) != 0)
			continue;
		json_t *fs = field_schema(f, svc_flags);
		if (!input && field_readonly(f))
			json_object_set_new(fs, "readOnly", json_true());
		json_object_set_new(props, f->name, fs);
		if (!(f->flags & EMH_F_NULLABLE) && !(input && partial))
			json_array_append_new(req, json_string(f->name));
	}
	json_t *s = json_pack("{s:s,s:o}", "type", "object", "properties", props);
	if (json_array_size(req))
		json_object_set_new(s, "required", req);
	else
		json_decref(req);
	return s;
}

static json_t *ref(const char *name)
{
	char buf[160];
	snprintf(buf, sizeof buf, "#/components/schemas/%s", name);
	return json_pack("{s:s}", "$ref", buf);
}

/* Add e's schema under name to schemas unless it is there; returns a $ref. */
static json_t *schema_ref(json_t *schemas, const emh_entity *e, unsigned svc_flags, const char *suffix, bool input,
			  bool partial)
{
	char name[128];
	snprintf(name, sizeof name, "%s%s", e->name, suffix);
	if (!json_object_get(schemas, name))
		json_object_set_new(schemas, name, entity_schema(e, svc_flags, input, partial));
	return ref(name);
}

static json_t *json_content(json_t *schema)
{
	return json_pack("{s:{s:o}}", "application/json", "schema", schema);
}

/* "/<mount><pattern>" with {name} parameters, into buf; the path parameters into params. */
static void openapi_path(const char *mount, const char *pattern, char *buf, size_t cap, json_t *params)
{
	size_t o = (size_t)snprintf(buf, cap, "/%s", mount);
	const char *p = pattern;
	while (*p && o + 2 < cap) {
		if (*p == '/') {
			p++;
			if (!*p)
				break;
			buf[o++] = '/';
			continue;
		}
		size_t len = strcspn(p, "/");
		if (*p == ':' || *p == '{') {
			const char *name = p + 1;
			size_t nl = *p == ':' ? len - 1 : strcspn(name, ":}");
			bool text = *p == '{' && strncmp(name + nl, ":int64", 6) != 0;
			o += (size_t)snprintf(buf + o, cap - o, "{%.*s}", (int)nl, name);
			char pname[64];
			snprintf(pname, sizeof pname, "%.*s", (int)nl, name);
			json_array_append_new(params,
					      json_pack("{s:s,s:s,s:b,s:o}", "name", pname, "in", "path", "required", 1,
							"schema",
							text ? json_pack("{s:s}", "type", "string")
							     : json_pack("{s:s,s:s}", "type", "integer", "format", "int64")));
		} else {
			o += (size_t)snprintf(buf + o, cap - o, "%.*s", (int)len, p);
		}
		p += len;
	}
	if (o >= cap)
		o = cap - 1;
	buf[o] = '\0';
}

static const char *const error_statuses[][2] = {
	{"400", "invalid request (the body's problems under error.fields)"},
	{"404", "no such route or object"},
	{"405", "method not allowed on this path (see Allow)"},
	{"409", "conflict (a unique value, a changed row)"},
	{"500", "internal error"},
	{"503", "a database is unavailable: retry later (see Retry-After)"},
};

static json_t *operation(const char *svc, const emh_service *d, const emh_route *r, json_t *params, json_t *schemas,
			 json_t *ids)
{
	/* a zero-extended copy: a doc built with fewer members reads the rest as 0 */
	emh_route_doc dc = {0};
	if (r->doc)
		memcpy(&dc, r->doc, r->doc->struct_size < sizeof dc ? r->doc->struct_size : sizeof dc);
	const emh_route_doc *doc = r->doc ? &dc : NULL;
	unsigned flags = doc ? doc->flags : 0;
	char opid[256];
	size_t o = (size_t)snprintf(opid, sizeof opid, "%s_%s", svc, r->method);
	for (const char *p = r->path; *p && o + 1 < sizeof opid; p++)
		opid[o++] = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ? *p : '_';
	opid[o] = '\0';
	/* "/a-b" and "/a_b" read alike: a later one gets a number */
	for (int n = 2; json_object_get(ids, opid) && n < 1000 && o + 5 < sizeof opid; n++)
		snprintf(opid + o, sizeof opid - o, "_%d", n);
	json_object_set_new(ids, opid, json_true());
	json_t *op = json_pack("{s:s,s:[s]}", "operationId", opid, "tags", svc);
	if (doc && doc->summary)
		json_object_set_new(op, "summary", json_string(doc->summary));
	json_t *ps = json_deep_copy(params);
	if (flags & EMH_ROUTE_LIST) {
		json_array_append_new(ps, json_pack("{s:s,s:s,s:b,s:{s:s,s:i}}", "name", "limit", "in", "query", "required",
						    0, "schema", "type", "integer", "minimum", 1));
		json_array_append_new(ps, json_pack("{s:s,s:s,s:b,s:{s:s,s:i}}", "name", "offset", "in", "query",
						    "required", 0, "schema", "type", "integer", "minimum", 0));
	}
	if (json_array_size(ps))
		json_object_set_new(op, "parameters", ps);
	else
		json_decref(ps);
	if (doc && doc->body) {
		bool partial = flags & EMH_ROUTE_PARTIAL;
		json_object_set_new(op, "requestBody",
				    json_pack("{s:b,s:o}", "required", 1, "content",
					      json_content(schema_ref(schemas, doc->body, d->flags,
								      partial ? "Patch" : "Input", true, partial))));
	}
	json_t *responses = json_object();
	const char *ok = flags & EMH_ROUTE_CREATED ? "201" : flags & EMH_ROUTE_NO_CONTENT ? "204" : "200";
	json_t *okr = json_pack("{s:s}", "description", flags & EMH_ROUTE_CREATED ? "created" : "success");
	if (doc && doc->reply && !(flags & EMH_ROUTE_NO_CONTENT)) {
		json_t *item = schema_ref(schemas, doc->reply, d->flags, "", false, false);
		json_t *schema = item;
		if (flags & EMH_ROUTE_LIST) {
			const char *key = doc->items_key ? doc->items_key : "items";
			schema = json_pack("{s:s,s:{s:{s:s,s:o},s:{s:s},s:{s:s},s:{s:s}},s:[s,s,s,s]}", "type", "object",
					   "properties", key, "type", "array", "items", item, "total", "type", "integer",
					   "limit", "type", "integer", "offset", "type", "integer", "required", key,
					   "total", "limit", "offset");
		}
		json_object_set_new(okr, "content", json_content(schema));
	}
	if (flags & EMH_ROUTE_CREATED)
		json_object_set_new(okr, "headers",
				    json_pack("{s:{s:s,s:{s:s}}}", "Location", "description", "the new object's path",
					      "schema", "type", "string"));
	json_object_set_new(responses, ok, okr);
	for (size_t i = 0; i < sizeof error_statuses / sizeof error_statuses[0]; i++)
		json_object_set_new(responses, error_statuses[i][0],
				    json_pack("{s:s,s:o}", "description", error_statuses[i][1], "content",
					      json_content(ref("Error"))));
	json_object_set_new(op, "responses", responses);
	return op;
}

static json_t *error_schema(void)
{
	return json_pack("{s:s,s:{s:{s:s,s:{s:{s:s},s:{s:s},s:{s:s},s:{s:s,s:{s:s,s:{s:{s:s},s:{s:s},s:{s:s}}}}},"
			 "s:[s,s,s]}},s:[s]}",
			 "type", "object", "properties", "error", "type", "object", "properties", "code", "type",
			 "string", "message", "type", "string", "context", "type", "string", "fields", "type", "array",
			 "items", "type", "object", "properties", "field", "type", "string", "problem", "type",
			 "string", "message", "type", "string", "required", "code", "message", "context", "required",
			 "error");
}

static void lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

json_t *emh_web_openapi(emh_services *s, const char *title)
{
	json_t *paths = json_object(), *schemas = json_object(), *ids = json_object();
	if (!paths || !schemas || !ids)
		goto oom;
	json_object_set_new(schemas, "Error", error_schema());
	emh_svc *svc;
	for (size_t i = 0; (svc = emh_services_at(s, i)); i++) {
		const emh_service *d = emh_svc_descriptor(svc);
		const char *mount = emh_svc_name(svc);
		for (size_t k = 0; k < d->nroutes; k++) {
			const emh_route *r = &d->routes[k];
			char path[512], method[17];
			/* OpenAPI has these methods only; another one stays undocumented */
			static const char *const known[] = {"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH",
							    "TRACE"};
			bool documented = false;
			for (size_t m = 0; m < sizeof known / sizeof known[0]; m++)
				documented |= strcmp(r->method, known[m]) == 0;
			if (!documented)
				continue;
			json_t *params = json_array();
			openapi_path(mount, r->path, path, sizeof path, params);
			snprintf(method, sizeof method, "%s", r->method);
			lower(method);
			json_t *item = json_object_get(paths, path);
			if (!item) {
				item = json_object();
				json_object_set_new(paths, path, item);
			}
			json_object_set_new(item, method, operation(mount, d, r, params, schemas, ids));
			json_decref(params);
		}
	}
	json_decref(ids);
	return json_pack("{s:s,s:{s:s,s:s},s:o,s:{s:o}}", "openapi", "3.1.0", "info", "title", title ? title : "emhost",
			 "version", PACKAGE_VERSION, "paths", paths, "components", "schemas", schemas);
oom:
	json_decref(paths);
	json_decref(schemas);
	json_decref(ids);
	return NULL;
}
