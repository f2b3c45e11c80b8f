/* sam_devs.c - sam-embed's and sam-decode's device lists: a model on each
 * device of --device opencl:all / opencl:A,B,..., and the pool that runs
 * items on them, a thread per device (mp_sam.h) */
#include "mp.h"
#include "mp_device.h"
#include "mp_sam.h"

#include <pthread.h>
#include <stdio.h>

int
mp_sam_devs_optfn(void *ctx, const char *arg)
{
	int idx[MP_SAM_MAXDEV];
	int n = mp_dev_list(arg, idx, MP_SAM_MAXDEV, 0);
	if (n < 0)
		return -1;
	if (n == 0)
		return mp_dev_optfn(ctx, arg);
	*(const char **)ctx = arg;
	return 0;
}

void
mp_sam_devs_open(mp_sam_devs *s, const char **weights, const char *adapter, const char *devspec, long threads,
                 const char *part)
{
	int idx[MP_SAM_MAXDEV];
	int n = mp_dev_list(devspec, idx, MP_SAM_MAXDEV, 1);
	if (n < 0)
		mp_die("--device: %s", mp_err());
	s->threads = threads;
	if (n == 0) {
		s->n = 1;
		s->d[0] = mp_sam_tool_open(&s->m[0], weights, adapter, devspec, threads, part);
		return;
	}
	s->n = n;
	for (int k = 0; k < n; k++) {
		char one[32];
		snprintf(one, sizeof one, "opencl:%d", idx[k]);
		s->d[k] = mp_sam_tool_open(&s->m[k], weights, adapter, one, threads, part);
	}
}

void
mp_sam_devs_free(mp_sam_devs *s)
{
	for (int k = 0; k < s->n; k++) {
		mp_sam_free(&s->m[k]);
		mp_dev_close(s->d[k]);
	}
	s->n = 0;
}

int
mp_sam_devs_encode(mp_sam_devs *s, int k, const float *img, float *emb)
{
	return mp_dev_sam_encode(s->d[k], &s->m[k], img, emb, (int)s->threads);
}

int
mp_sam_devs_decode_masks(mp_sam_devs *s, int k, const float *emb, size_t n, const mp_sam_prompt *p,
                         const mp_sam_masks *ms, float *const *planes, float *iou)
{
	return mp_dev_sam_decode_masks(s->d[k], &s->m[k], emb, n, p, ms, planes, iou, (int)s->threads);
}

typedef struct {
	int k, ndev;
	size_t n;
	const int *dev;
	mp_dev_pool_fn fn;
	void *ctx;
} worker;

static void *
work(void *arg)
{
	worker *w = arg;
	for (size_t i = 0; i < w->n; i++)
		if ((w->dev ? w->dev[i] : (int)(i % (size_t)w->ndev)) == w->k)
			w->fn(w->ctx, w->k, i);
	return NULL;
}

void
mp_dev_pool(int ndev, size_t n, const int *dev, mp_dev_pool_fn fn, void *ctx)
{
	worker w[MP_SAM_MAXDEV];
	pthread_t th[MP_SAM_MAXDEV];
	int busy[MP_SAM_MAXDEV] = { 0 };

	if (ndev < 1 || ndev > MP_SAM_MAXDEV)
		mp_die("mp_dev_pool: %d devices", ndev);
	for (size_t i = 0; i < n; i++)
		busy[dev ? dev[i] : (int)(i % (size_t)ndev)] = 1;
	for (int k = 0; k < ndev; k++) {
		w[k] = (worker){ .k = k, .ndev = ndev, .n = n, .dev = dev, .fn = fn, .ctx = ctx };
		if (k && busy[k] && pthread_create(&th[k], NULL, work, &w[k]))
			mp_die("cannot start a thread for device %d", k);
	}
	work(&w[0]);
	for (int k = 1; k < ndev; k++)
		if (busy[k])
			pthread_join(th[k], NULL);
}
