/* test_keys.c - the medpipe.* key table (mp_keys.h) and man/man5/medpipe-vol.5
 * list exactly the same keys; the role/case readers and writers */
#include "mp.h"
#include "t.h"

#include <stdlib.h>

#define MAXK 512

/* the keys of the page's KEYS section: the words of ".B" lines, separated by
 * '", "'; a word starting with '.' continues the group of the line's first
 * key ("medpipe.dicom.series_number ", " .model" is medpipe.dicom.model) */
static int
page_keys(const char *path, char *keys[], int *n)
{
	FILE *fp = fopen(path, "r");
	char line[1024];
	int in = 0;

	if (!fp)
		return -1;
	*n = 0;
	while (fgets(line, sizeof line, fp)) {
		line[strcspn(line, "\n")] = 0;
		if (strncmp(line, ".SH ", 4) == 0)
			in = strcmp(line, ".SH KEYS") == 0;
		if (!in || strncmp(line, ".B medpipe.", 11) != 0)
			continue;
		char group[256] = "", *p = line + 3;
		for (;;) {
			char word[256];
			size_t k = 0;
			while (*p && *p != ' ' && k + 1 < sizeof word) {
				if (p[0] == '\\' && p[1] == '-')
					p++;
				word[k++] = *p++;
			}
			word[k] = 0;
			char full[512];
			if (word[0] == '.')
				snprintf(full, sizeof full, "%s%s", group, word + 1);
			else {
				snprintf(full, sizeof full, "%s", word);
				snprintf(group, sizeof group, "%s", word);
				char *d = strrchr(group, '.');
				if (d)
					d[1] = 0;
			}
			if (*n < MAXK)
				keys[(*n)++] = strdup(full);
			if (strncmp(p, " \", \" ", 6) != 0)
				break;
			p += 6;
		}
	}
	fclose(fp);
	return 0;
}

int
main(void)
{
	char *pk[MAXK];
	int np = 0;

	int dup = 0, pre = 0;
	for (size_t i = 0; i < mp_nkeys; i++) {
		pre += strncmp(mp_keys[i].name, MP_K_PREFIX, strlen(MP_K_PREFIX)) != 0 || !*mp_keys[i].meaning;
		for (size_t j = 0; j < i; j++)
			dup += strcmp(mp_keys[i].name, mp_keys[j].name) == 0;
	}
	T_OK(mp_nkeys > 50 && dup == 0 && pre == 0, "keys-table-unique");
	T_OK(mp_key_find(MP_K_HISTORY) && !mp_key_find("medpipe.no-such-key"), "keys-find");

	if (page_keys("man/man5/medpipe-vol.5", pk, &np) < 0) {
		T_FAIL("keys-man5", "cannot read man/man5/medpipe-vol.5 (run from the project root)");
		return 1;
	}
	int bad = 0;
	for (int i = 0; i < np; i++)
		if (!mp_key_find(pk[i])) {
			T_FAIL("keys-man5-known", "the page lists %s, which is not in mp_keys.h's table", pk[i]);
			bad++;
		}
	if (!bad)
		T_PASS("keys-man5-known");
	bad = 0;
	for (size_t i = 0; i < mp_nkeys; i++) {
		int found = 0;
		for (int j = 0; j < np; j++)
			found |= strcmp(pk[j], mp_keys[i].name) == 0;
		if (!found) {
			T_FAIL("keys-man5-complete", "%s (%s) is not listed in man/man5/medpipe-vol.5", mp_keys[i].name, mp_keys[i].meaning);
			bad++;
		}
	}
	if (!bad)
		T_PASS("keys-man5-complete");
	for (int i = 0; i < np; i++)
		free(pk[i]);

	mp_frame f;
	memset(&f, 0, sizeof f);
	T_OK(strcmp(mp_role(&f), "image") == 0 && strcmp(mp_case(&f), "") == 0, "keys-role-case-default");
	mp_set_role(&f, "label");
	mp_set_case(&f, "c1");
	T_OK(strcmp(mp_get_kv(&f, "medpipe.role"), "label") == 0 && strcmp(mp_case(&f), "c1") == 0, "keys-role-case-set");
	mp_frame_free(&f);
	return t_failed != 0;
}
