/* keys.c - the table of medpipe.* frame keys (mp_keys.h) and the readers and
 * writers of the keys every program touches (medpipe.role, medpipe.case) */
#include "mp.h"

#include <string.h>

#define MP_KEY_ROW(name, meaning) { name, meaning },
const mp_key_info mp_keys[] = { MP_KEY_TABLE(MP_KEY_ROW) };
const size_t mp_nkeys = sizeof mp_keys / sizeof mp_keys[0];

const mp_key_info *
mp_key_find(const char *name)
{
	for (size_t i = 0; i < mp_nkeys; i++)
		if (strcmp(mp_keys[i].name, name) == 0)
			return &mp_keys[i];
	return NULL;
}

const char *
mp_role(const mp_frame *f)
{
	const char *r = mp_get_kv(f, MP_K_ROLE);

	return r && *r ? r : "image";
}

const char *
mp_case(const mp_frame *f)
{
	const char *c = mp_get_kv(f, MP_K_CASE);

	return c ? c : "";
}

void
mp_set_role(mp_frame *f, const char *role)
{
	mp_set_kv(f, MP_K_ROLE, role);
}

void
mp_set_case(mp_frame *f, const char *kase)
{
	mp_set_kv(f, MP_K_CASE, kase);
}
