/* device.c - the choice of device (--device, MEDPIPE_DEVICE) and the
 * dispatchers that run a step in C or on OpenCL (see mp_device.h) */
#include "mp_device.h"
#include "mp_cl.h"

#include <stdlib.h>
#include <string.h>

struct mp_dev {
	mp_cl *cl;          /* NULL: the C path */
	int automatic;      /* chosen by auto: fall back to C on OpenCL failure */
	int failed;         /* auto and OpenCL failed once: stay on C */
	char name[300];
};

int
mp_dev_check(const char *spec)
{
	const char *p;
	char *end;
	long n;

	if (!spec || !strcmp(spec, "cpu") || !strcmp(spec, "auto") || !strcmp(spec, "opencl"))
		return 0;
	if (!strncmp(spec, "opencl:", 7)) {
		p = spec + 7;
		n = strtol(p, &end, 10);
		if (*p >= '0' && *p <= '9' && !*end && n >= 0 && n < 1000)
			return 0;
	}
	return mp_seterr("bad device '%s' (cpu, opencl, opencl:N or auto)", spec);
}

int
mp_dev_optfn(void *ctx, const char *arg)
{
	if (mp_dev_check(arg))
		return -1;
	*(const char **)ctx = arg;
	return 0;
}

static mp_dev *
cpu_dev(void)
{
	mp_dev *d = mp_xcalloc(1, sizeof *d);
	snprintf(d->name, sizeof d->name, "cpu");
	return d;
}

mp_dev *
mp_dev_open(const char *spec)
{
	const mp_cl_devinfo *l;
	mp_dev *d;
	int n, idx = -1;

	if (!spec || !*spec) {
		spec = getenv("MEDPIPE_DEVICE");
		if (!spec || !*spec)
			spec = "auto";
		else if (mp_dev_check(spec))
			return mp_preerr("MEDPIPE_DEVICE"), NULL;
	}
	if (mp_dev_check(spec))
		return NULL;
	if (!strcmp(spec, "cpu"))
		return cpu_dev();
	if (!strcmp(spec, "auto")) {
		n = mp_cl_devices(&l);
		for (int i = 0; i < n; i++)
			if (l[i].type != MP_CL_CPU) { idx = i; break; }
		if (idx < 0) {
			mp_note("device: auto: no OpenCL GPU, using the C path");
			return cpu_dev();
		}
		d = mp_xcalloc(1, sizeof *d);
		d->automatic = 1;
		if (!(d->cl = mp_cl_open(idx))) {
			mp_note("device: auto: %s; using the C path", mp_err());
			snprintf(d->name, sizeof d->name, "cpu");
			return d;
		}
	} else {
		if (spec[6] == ':')
			idx = atoi(spec + 7);
		d = mp_xcalloc(1, sizeof *d);
		if (!(d->cl = mp_cl_open(idx))) {
			free(d);
			return NULL;
		}
	}
	snprintf(d->name, sizeof d->name, "opencl:%d (%s)", mp_cl_info(d->cl)->index, mp_cl_info(d->cl)->name);
	mp_note("device: %s", d->name);
	return d;
}

void
mp_dev_close(mp_dev *d)
{
	if (!d)
		return;
	mp_cl_close(d->cl);
	free(d);
}

int mp_dev_is_cl(const mp_dev *d) { return d && d->cl && !d->failed; }
struct mp_cl *mp_dev_cl(mp_dev *d) { return mp_dev_is_cl(d) ? d->cl : NULL; }
const char *mp_dev_name(const mp_dev *d) { return d ? d->name : "cpu"; }

/* after an OpenCL attempt returned rc: 0 done; 1 run the C path instead; -1 fail */
static int
after_cl(mp_dev *d, int rc, const char *step)
{
	if (rc == 0)
		return 0;
	if (rc == MP_CL_UNSUPPORTED) {
		mp_note("device: %s: not supported on %s; using the C path", step, d->name);
		return 1;
	}
	if (d->automatic) {
		mp_note("device: %s on %s: %s; using the C path from now on", step, d->name, mp_err());
		d->failed = 1;
		snprintf(d->name, sizeof d->name, "cpu");
		return 1;
	}
	return -1;
}

int
mp_dev_convert(mp_dev *d, void *dst, mp_type dt, const void *src, mp_type st, size_t n)
{
	if (dt != st && mp_dev_is_cl(d)) {
		int r = after_cl(d, mp_cl_convert(d->cl, dst, dt, src, st, n), "convert");
		if (r <= 0)
			return r;
	}
	mp_convert(dst, dt, src, st, n);
	return 0;
}
