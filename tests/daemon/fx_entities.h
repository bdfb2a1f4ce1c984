/* SPDX-License-Identifier: MIT */
/* tests/daemon/fx_entities.h: entities of the fixture service modules and of t_services. */
#ifndef EMH_TESTS_FX_ENTITIES_H
#define EMH_TESTS_FX_ENTITIES_H

#include <stdint.h>

#include <emhost/entity.h>

#define FX_UNUSED __attribute__((unused))

typedef struct fx_note {
	int64_t id;
	const char *text;
} fx_note;

static const emh_field fx_note_fields[] = {
	EMH_FIELD(fx_note, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(fx_note, text, EMH_T_TEXT, 0),
};
static FX_UNUSED const emh_entity fx_note_entity = EMH_ENTITY(fx_note, "fx_notes", fx_note_fields);

/* Another entity on the same table: refused next to fx_note. */
typedef struct fx_clash {
	int64_t id;
	int64_t amount;
} fx_clash;

static const emh_field fx_clash_fields[] = {
	EMH_FIELD(fx_clash, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(fx_clash, amount, EMH_T_INT64, 0),
};
static FX_UNUSED const emh_entity fx_clash_entity = EMH_ENTITY(fx_clash, "fx_notes", fx_clash_fields);

/* An entity no fixture declares. */
typedef struct fx_other {
	int64_t id;
} fx_other;

static const emh_field fx_other_fields[] = {
	EMH_FIELD(fx_other, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
};
static FX_UNUSED const emh_entity fx_other_entity = EMH_ENTITY(fx_other, "fx_others", fx_other_fields);

#endif
