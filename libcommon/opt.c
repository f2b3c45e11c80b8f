/* opt.c - the option table: one declaration drives parsing, --help and the
 * man page (--man). */
#include "mp.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *mp_version_note;

static const mp_opt builtin[] = {
	{ "help", 'h', MP_OPT_FLAG, NULL, NULL, NULL, "Print this help and exit." },
	{ "version", 0, MP_OPT_FLAG, NULL, NULL, NULL, "Print the version and exit." },
	{ "verbose", 0, MP_OPT_FLAG, NULL, NULL, NULL, "Say more on standard error." },
	{ "man", 0, MP_OPT_FLAG, NULL, NULL, NULL, "Print the manual page (troff) and exit." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

int
mp_parse_long(const char *s, long *v)
{
	char *end;

	errno = 0;
	*v = strtol(s, &end, 10);
	if (end == s || *end || errno)
		return mp_seterr("'%s' is not a whole number", s);
	return 0;
}

int
mp_parse_double(const char *s, double *v)
{
	char *end;

	errno = 0;
	*v = strtod(s, &end);
	if (end == s || *end || errno || !isfinite(*v))
		return mp_seterr("'%s' is not a number", s);
	return 0;
}

int
mp_parse_doubles(const char *s, double *v, int max)
{
	int n = 0;
	const char *p = s;

	for (;;) {
		char *end;
		if (n >= max)
			return mp_seterr("'%s': more than %d numbers", s, max);
		errno = 0;
		v[n] = strtod(p, &end);
		if (end == p || errno || !isfinite(v[n]))
			return mp_seterr("'%s' is not a list of numbers", s);
		n++;
		if (*end == 0)
			return n;
		if (*end != ',')
			return mp_seterr("'%s' is not a comma-separated list of numbers", s);
		p = end + 1;
	}
}

int
mp_parse_dims(const char *s, long *v, int max)
{
	int n = 0;
	const char *p = s;

	for (;;) {
		char *end;
		if (n >= max)
			return mp_seterr("'%s': more than %d sizes", s, max);
		errno = 0;
		v[n] = strtol(p, &end, 10);
		if (end == p || errno || v[n] <= 0)
			return mp_seterr("'%s' is not a size like 256x256", s);
		n++;
		if (*end == 0)
			return n;
		if (*end != 'x' && *end != 'X')
			return mp_seterr("'%s' is not a size like 256x256", s);
		p = end + 1;
	}
}

static const mp_opt *
find_long(const mp_prog *p, const char *name, size_t len)
{
	for (const mp_opt *o = p->opts; o && o->kind != MP_OPT_END; o++)
		if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
			return o;
	for (const mp_opt *o = builtin; o->kind != MP_OPT_END; o++)
		if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
			return o;
	return NULL;
}

static const mp_opt *
find_short(const mp_prog *p, char c)
{
	for (const mp_opt *o = p->opts; o && o->kind != MP_OPT_END; o++)
		if (o->shrt == c)
			return o;
	for (const mp_opt *o = builtin; o->kind != MP_OPT_END; o++)
		if (o->shrt == c)
			return o;
	return NULL;
}

static void
apply(const mp_prog *p, const mp_opt *o, const char *arg, const char *as)
{
	if (o->dst == NULL && o->kind == MP_OPT_FLAG && o >= builtin && o < builtin + 4) {
		if (strcmp(o->name, "help") == 0) {
			mp_print_help(p, stdout);
			exit(fflush(stdout) ? 1 : 0);
		}
		if (strcmp(o->name, "version") == 0) {
			printf("%s (medpipe) %s\n", p->name, MP_VERSION);
			if (mp_version_note)
				printf("%s\n", mp_version_note);
			exit(fflush(stdout) ? 1 : 0);
		}
		if (strcmp(o->name, "man") == 0) {
			mp_print_man(p, stdout);
			exit(fflush(stdout) ? 1 : 0);
		}
		if (strcmp(o->name, "verbose") == 0) {
			mp_verbose++;
			return;
		}
	}
	switch (o->kind) {
	case MP_OPT_FLAG:
		if (o->dst)
			*(int *)o->dst = 1;
		else if (o->fn && o->fn(NULL, NULL) < 0)
			mp_usage_die("%s: %s", as, mp_err());
		break;
	case MP_OPT_STR:
		*(const char **)o->dst = arg;
		break;
	case MP_OPT_INT:
		if (mp_parse_long(arg, (long *)o->dst) < 0)
			mp_usage_die("%s: %s", as, mp_err());
		break;
	case MP_OPT_DBL:
		if (mp_parse_double(arg, (double *)o->dst) < 0)
			mp_usage_die("%s: %s", as, mp_err());
		break;
	case MP_OPT_CALL:
		if (o->fn(o->dst, arg) < 0)
			mp_usage_die("%s: %s", as, mp_err());
		break;
	default:
		break;
	}
}

static int
takes_arg(const mp_opt *o)
{
	return o->kind == MP_OPT_STR || o->kind == MP_OPT_INT || o->kind == MP_OPT_DBL ||
	       (o->kind == MP_OPT_CALL && o->argname);
}

int
mp_parse_pos(const mp_prog *p, int argc, char **argv,
	     int (*pos_fn)(void *ctx, const char *arg), void *ctx)
{
	int n = 0, dashdash = 0;

	mp_init(p->name);
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		const mp_opt *o;

		if (dashdash || a[0] != '-' || a[1] == 0) {
			if (pos_fn(ctx, a) < 0)
				mp_usage_die("%s", mp_err());
			n++;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			dashdash = 1;
			continue;
		}
		if (a[1] == '-') {
			char *name = a + 2, *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);
			const char *arg = NULL;
			char as[128];
			o = find_long(p, name, len);
			snprintf(as, sizeof as, "--%.*s", (int)len, name);
			if (!o)
				mp_usage_die("unknown option '%s'", as);
			if (takes_arg(o)) {
				if (eq)
					arg = eq + 1;
				else if (i + 1 < argc)
					arg = argv[++i];
				else
					mp_usage_die("option '%s' needs an argument (%s)", as, o->argname ? o->argname : "value");
			} else if (eq) {
				mp_usage_die("option '%s' takes no argument", as);
			}
			apply(p, o, arg, as);
			continue;
		}
		/* short options; flags may be grouped (-vq), an argument may follow (-n5 or -n 5) */
		for (char *c = a + 1; *c; c++) {
			char as[3] = { '-', *c, 0 };
			o = find_short(p, *c);
			if (!o)
				mp_usage_die("unknown option '%s'", as);
			if (takes_arg(o)) {
				const char *arg = NULL;
				if (c[1])
					arg = c + 1;
				else if (i + 1 < argc)
					arg = argv[++i];
				else
					mp_usage_die("option '%s' needs an argument (%s)", as, o->argname ? o->argname : "value");
				apply(p, o, arg, as);
				break;
			}
			apply(p, o, NULL, as);
		}
	}
	return n;
}

typedef struct {
	char **v;
	int n;
} poslist;

static int
collect(void *ctx, const char *arg)
{
	poslist *l = ctx;

	l->v = mp_xrealloc(l->v, (size_t)(l->n + 2) * sizeof *l->v);
	l->v[l->n++] = (char *)arg;
	l->v[l->n] = NULL;
	return 0;
}

int
mp_parse(const mp_prog *p, int argc, char **argv, char ***args)
{
	poslist l = { NULL, 0 };

	collect(&l, "");
	l.n = 0;
	mp_parse_pos(p, argc, argv, collect, &l);
	*args = l.v;
	return l.n;
}

/* ------------------------------------------------------------------ help */
static void
wrap(FILE *fp, const char *text, int indent, int first_col, int width)
{
	int col = first_col;
	const char *s = text;

	while (*s) {
		size_t w;
		while (*s == ' ')
			s++;
		w = strcspn(s, " \n");
		if (col > indent && col + 1 + (int)w > width) {
			fprintf(fp, "\n%*s", indent, "");
			col = indent;
		} else if (col > indent) {
			fputc(' ', fp);
			col++;
		} else if (col < indent) {
			fprintf(fp, "%*s", indent - col, "");
			col = indent;
		}
		fwrite(s, 1, w, fp);
		col += (int)w;
		s += w;
		if (*s == '\n') {
			fprintf(fp, "\n%*s", indent, "");
			col = indent;
			s++;
		}
	}
	fputc('\n', fp);
}

static int
optlabel(const mp_opt *o, char *buf, size_t n)
{
	if (o->shrt)
		snprintf(buf, n, "  -%c, --%s%s%s", o->shrt, o->name, takes_arg(o) ? " " : "",
			 takes_arg(o) ? (o->argname ? o->argname : "X") : "");
	else
		snprintf(buf, n, "      --%s%s%s", o->name, takes_arg(o) ? " " : "",
			 takes_arg(o) ? (o->argname ? o->argname : "X") : "");
	return (int)strlen(buf);
}

static void
help_opts(const mp_opt *opts, FILE *fp)
{
	for (const mp_opt *o = opts; o && o->kind != MP_OPT_END; o++) {
		char lab[160];
		int w = optlabel(o, lab, sizeof lab);
		fputs(lab, fp);
		if (w >= 28) {
			fputc('\n', fp);
			w = 0;
		}
		wrap(fp, o->help ? o->help : "", 30, w, 79);
	}
}

void
mp_print_help(const mp_prog *p, FILE *fp)
{
	fprintf(fp, "Usage: %s %s\n", p->name, p->usage ? p->usage : "[options] [FILE...]");
	wrap(fp, p->summary, 0, 0, 79);
	fputs("\nOptions:\n", fp);
	help_opts(p->opts, fp);
	help_opts(builtin, fp);
	if (p->examples && *p->examples) {
		fputs("\nExamples:\n", fp);
		for (const char *s = p->examples; *s;) {
			size_t w = strcspn(s, "\n");
			fprintf(fp, "  %.*s\n", (int)w, s);
			s += w;
			if (*s)
				s++;
		}
	}
	fprintf(fp, "\nExit status: 0 success, 1 failure, 2 bad usage. Manual: man %s\n", p->name);
}

/* troff-escape one line of text */
static void
man_text(FILE *fp, const char *s, size_t n)
{
	if (n > 0 && (s[0] == '.' || s[0] == '\''))
		fputs("\\&", fp);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\\')
			fputs("\\e", fp);
		else if (s[i] == '-')
			fputs("\\-", fp);
		else
			fputc(s[i], fp);
	}
}

static void
man_paras(FILE *fp, const char *text)
{
	/* paragraphs split by blank lines; a paragraph whose lines start with
	 * two spaces is shown as is (.nf) */
	const char *s = text;

	while (*s) {
		const char *e = strstr(s, "\n\n");
		size_t n = e ? (size_t)(e - s) : strlen(s);
		int pre = n >= 2 && s[0] == ' ' && s[1] == ' ';
		fputs(".PP\n", fp);
		if (pre)
			fputs(".nf\n", fp);
		for (const char *l = s; l < s + n;) {
			size_t w = strcspn(l, "\n");
			if (l + w > s + n)
				w = (size_t)(s + n - l);
			man_text(fp, l, w);
			fputc('\n', fp);
			l += w;
			if (l < s + n)
				l++;
		}
		if (pre)
			fputs(".fi\n", fp);
		s += n;
		while (*s == '\n')
			s++;
	}
}

static void
man_opts(FILE *fp, const mp_opt *opts)
{
	for (const mp_opt *o = opts; o && o->kind != MP_OPT_END; o++) {
		fputs(".TP\n", fp);
		if (o->shrt)
			fprintf(fp, "\\fB\\-%c\\fR, ", o->shrt);
		fputs("\\fB\\-\\-", fp);
		man_text(fp, o->name, strlen(o->name));
		fputs("\\fR", fp);
		if (takes_arg(o)) {
			const char *a = o->argname ? o->argname : "X";
			fputs(" \\fI", fp);
			man_text(fp, a, strlen(a));
			fputs("\\fR", fp);
		}
		fputc('\n', fp);
		man_text(fp, o->help ? o->help : "", strlen(o->help ? o->help : ""));
		fputc('\n', fp);
	}
}

void
mp_print_man(const mp_prog *p, FILE *fp)
{
	fprintf(fp, ".\\\" generated by '%s --man' from the program's option table; do not edit\n", p->name);
	fprintf(fp, ".TH %s 1 \"\" \"medpipe %s\" \"medpipe manual\"\n", p->name, MP_VERSION);
	fputs(".SH NAME\n", fp);
	man_text(fp, p->name, strlen(p->name));
	fputs(" \\- ", fp);
	man_text(fp, p->summary, strlen(p->summary));
	fputs("\n.SH SYNOPSIS\n.B ", fp);
	man_text(fp, p->name, strlen(p->name));
	fputc('\n', fp);
	{
		const char *u = p->usage ? p->usage : "[options] [FILE...]";
		man_text(fp, u, strlen(u));
	}
	fputs("\n.SH DESCRIPTION\n", fp);
	man_paras(fp, p->description && *p->description ? p->description : p->summary);
	fputs(".SH OPTIONS\n", fp);
	man_opts(fp, p->opts);
	man_opts(fp, builtin);
	fputs(".SH EXIT STATUS\n.TP\n0\nsuccess\n.TP\n1\nfailure at run time (bad input, I/O error); one line on standard error says what and where\n.TP\n2\nbad usage (unknown option, bad option value, output to a terminal)\n", fp);
	if (p->examples && *p->examples) {
		fputs(".SH EXAMPLES\n.nf\n", fp);
		for (const char *s = p->examples; *s;) {
			size_t w = strcspn(s, "\n");
			man_text(fp, s, w);
			fputc('\n', fp);
			s += w;
			if (*s)
				s++;
		}
		fputs(".fi\n", fp);
	}
	fputs(".SH SEE ALSO\n", fp);
	{
		const char *sa = p->seealso && *p->seealso ? p->seealso : "medpipe(7), medpipe-vol(5)";
		man_text(fp, sa, strlen(sa));
	}
	fputc('\n', fp);
}
