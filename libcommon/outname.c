/* outname.c - output file names from patterns (mp_fmt.h): {case} {role} {n}
 * {type}, and the folders above a name */
#include "mp.h"
#include "mp_fmt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const fields[] = { "{case}", "{role}", "{n}", "{type}" };

char *
mp_outname(const char *pat, const mp_frame *f, int n)
{
	size_t cap = strlen(pat) + 256, len = 0;
	char *out = mp_xmalloc(cap);

	for (const char *s = pat; *s;) {
		char val[256];
		const char *v = NULL;
		size_t k, fi = sizeof fields / sizeof *fields;
		if (*s == '{')
			for (fi = 0; fi < sizeof fields / sizeof *fields; fi++)
				if (strncmp(s, fields[fi], strlen(fields[fi])) == 0)
					break;
		switch (fi) {
		case 0:   /* the case, made safe for a file name */
			snprintf(val, sizeof val, "%s", *mp_case(f) ? mp_case(f) : "case");
			for (char *c = val; *c; c++)
				if (*c == '/' || *c == '\\' || *c == ' ' || (unsigned char)*c < 32)
					*c = '_';
			v = val;
			break;
		case 1:
			snprintf(val, sizeof val, "%s", mp_role(f));
			for (char *c = val; *c; c++)
				if (*c == '/')
					*c = '_';
			v = val;
			break;
		case 2:
			snprintf(val, sizeof val, "%d", n);
			v = val;
			break;
		case 3:
			v = mp_type_name(f->type);
			break;
		default:
			val[0] = *s;
			val[1] = 0;
			v = val;
			s++;
		}
		if (fi < sizeof fields / sizeof *fields)
			s += strlen(fields[fi]);
		k = strlen(v);
		if (len + k + 1 > cap) {
			cap = (len + k + 1) * 2;
			out = mp_xrealloc(out, cap);
		}
		memcpy(out + len, v, k + 1);
		len += k;
	}
	return out;
}

int
mp_outname_is_pattern(const char *s)
{
	for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
		if (strstr(s, fields[i]))
			return 1;
	return 0;
}

int
mp_make_parents(const char *path)
{
	char *p = mp_xstrdup(path);

	for (char *s = p + 1; *s; s++)
		if (*s == '/') {
			*s = 0;
			if (mkdir(p, 0777) < 0 && errno != EEXIST) {
				mp_seterr("%s: cannot create folder %s:", path, p);
				free(p);
				return -1;
			}
			*s = '/';
		}
	free(p);
	return 0;
}

char *
mp_outname_percent(const char *pat)
{
	/* "%c" (2 bytes) grows to "{case}" (6): at most 3 times as long */
	char *out = mp_xmalloc(3 * strlen(pat) + 1), *q = out;

	for (const char *p = pat; *p; p++)
		if (p[0] == '%' && (p[1] == 'c' || p[1] == 'n'))
			q = stpcpy(q, *++p == 'c' ? "{case}" : "{n}");
		else
			*q++ = *p;
	*q = 0;
	return out;
}

int
mp_outname_per_case(const char *s)
{
	return strstr(s, "{case}") || strstr(s, "{n}");
}
