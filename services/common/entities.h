/* SPDX-License-Identifier: MIT */
/*
 * services/common/entities.h: the entities of the bundled services.  Each
 * module compiles its own copy; the host resolves identical copies declared by
 * two modules (users writes users, profile reads them) to one registration.
 */
#ifndef EMH_SERVICES_ENTITIES_H
#define EMH_SERVICES_ENTITIES_H

#include <stdint.h>

#include <emhost/entity.h>

#define SVC_UNUSED __attribute__((unused))

/*
 * A user of the `users` service, table "users" of the default context.
 * events is a relation the `profile` service declares (its own declaration
 * of users: the same columns, so the host takes both for one entity); it
 * stays empty for everyone else.
 */
typedef struct user {
	int64_t id;        /* generated */
	const char *name;
	const char *email; /* unique */
	emh_list events;   /* profile: the user's events, once loaded */
} user;

/* Limits in bytes (max_len): a display name, and the longest address SMTP carries (RFC 5321). */
#define USER_NAME_MAX 200
#define USER_EMAIL_MAX 254
/* The columns of every declaration of users. */
#define USER_COLUMNS                                                           \
	EMH_FIELD(user, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),          \
	EMH_FIELD_LEN(user, name, EMH_T_TEXT, 0, USER_NAME_MAX),               \
	EMH_FIELD_LEN(user, email, EMH_T_TEXT, EMH_F_UNIQUE, USER_EMAIL_MAX)

static const emh_field user_fields[] = {USER_COLUMNS};
static SVC_UNUSED const emh_entity user_entity = EMH_ENTITY(user, "users", user_fields);

/* An analytics event, table/collection "events" of the analytics context. */
typedef struct event {
	int64_t id;          /* generated */
	int64_t user_id;     /* indexed */
	const char *type;    /* indexed */
	emh_time created_at; /* when the event was recorded */
} event;

/* An event type is a short name ("login", "page_view"). */
#define EVENT_TYPE_MAX 64
static const emh_field event_fields[] = {
	EMH_FIELD(event, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(event, user_id, EMH_T_INT64, EMH_F_INDEXED),
	EMH_FIELD_LEN(event, type, EMH_T_TEXT, EMH_F_INDEXED, EVENT_TYPE_MAX),
	EMH_FIELD(event, created_at, EMH_T_TIMESTAMP, EMH_F_READONLY), /* set by the service */
};
static SVC_UNUSED const emh_entity event_entity = EMH_ENTITY(event, "events", event_fields);

#endif
