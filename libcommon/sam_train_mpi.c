/* sam_train_mpi.c - data-parallel training over MPI (mp_train.h, mp_dist_*):
 * the ranks, the sums of the gradient buffer, the default thread count per
 * rank. Built with MPI (-DMP_HAVE_MPI and mpicc's flags, set by the Makefile
 * for this file alone) where mpicc is present; otherwise one process, and a
 * process that finds itself started as one of several ranks stops. */
#include "mp_train.h"
#include "mp.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#ifdef MP_HAVE_MPI
#include <mpi.h>
static int dlive;                /* MPI_Init done, MPI_Finalize not yet */
#endif

static int drank, dsize = 1, dlrank, dlsize = 1;

/* how many processes a launcher says it started: mpirun (Open MPI), PMIx
 * (srun --mpi=pmix, mpirun), PMI-2 (srun --mpi=pmi2, MPICH's hydra), or a
 * Slurm step of several tasks; 1 when none */
static long
launched(const char **by)
{
	static const char *vars[][2] = {
		{ "OMPI_COMM_WORLD_SIZE", "mpirun" }, { "PMI_SIZE", "PMI" }, { "SLURM_STEP_NUM_TASKS", "srun" },
	};
	for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
		const char *v = getenv(vars[i][0]);
		long n = v ? strtol(v, NULL, 10) : 0;
		if (n > 1) {
			*by = vars[i][1];
			return n;
		}
	}
	return 1;
}

/* started by an MPI launcher (its wire-up variables are set) */
static int
under_mpi(void)
{
	return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK") || getenv("PMI_FD");
}

#ifdef MP_HAVE_MPI
static void
abort_job(void)
{
	int fin = 1;
	/* an exit before mp_dist_finalize (an error on some rank): end every
	 * rank, rather than leave the others waiting in a collective */
	if (dlive && MPI_Finalized(&fin) == MPI_SUCCESS && !fin)
		MPI_Abort(MPI_COMM_WORLD, 1);
}
#endif

int
mp_dist_init(int *argc, char ***argv)
{
	const char *by = "";
	long n = launched(&by);

#ifdef MP_HAVE_MPI
	if (under_mpi()) {
		int prov;
		MPI_Comm local;
		if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &prov) != MPI_SUCCESS)
			return mp_seterr("MPI_Init failed");
		dlive = 1;
		atexit(abort_job);
		MPI_Comm_rank(MPI_COMM_WORLD, &drank);
		MPI_Comm_size(MPI_COMM_WORLD, &dsize);
		if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, drank, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
			MPI_Comm_rank(local, &dlrank);
			MPI_Comm_size(local, &dlsize);
			MPI_Comm_free(&local);
		}
		return 0;
	}
	if (n > 1)
		return mp_seterr("started as one of %ld tasks by %s, without MPI's wire-up: the copies would not "
		                 "exchange gradients (under Slurm: srun --mpi=pmix, or mpirun inside the allocation)", n, by);
#else
	(void)argc;
	(void)argv;
	if (n > 1 || under_mpi())
		return mp_seterr("started as one of %ld processes by %s, but this build has no MPI (build with "
		                 "Open MPI's mpicc present: libopenmpi-dev)", n, *by ? by : "an MPI launcher");
#endif
	return 0;
}

void
mp_dist_finalize(void)
{
#ifdef MP_HAVE_MPI
	if (dlive) {
		MPI_Finalize();
		dlive = 0;
	}
#endif
}

int
mp_dist_rank(void)
{
	return drank;
}

int
mp_dist_size(void)
{
	return dsize;
}

int
mp_dist_local_rank(void)
{
	return dlrank;
}

int
mp_dist_threads(void)
{
	long on = sysconf(_SC_NPROCESSORS_ONLN);
	int n = on > 0 ? (int)on : 1;
	cpu_set_t cs;
	/* bound by the launcher (mpirun --bind-to, Slurm's task/affinity or
	 * cgroups): the CPUs given; else an equal share of the node */
	if (sched_getaffinity(0, sizeof cs, &cs) == 0 && CPU_COUNT(&cs) > 0 && CPU_COUNT(&cs) < n)
		return CPU_COUNT(&cs);
	n /= dlsize;
	return n > 0 ? n : 1;
}

#ifdef MP_HAVE_MPI
/* buf (n elements of es bytes, MPI type t) summed over the ranks in place,
 * in pieces of at most 2^30 elements (MPI counts are ints) */
static int
sum_all(void *buf, size_t n, size_t es, MPI_Datatype t)
{
	for (size_t o = 0; dsize > 1 && o < n;) {
		int k = n - o > (size_t)1 << 30 ? 1 << 30 : (int)(n - o);
		if (MPI_Allreduce(MPI_IN_PLACE, (char *)buf + o * es, k, t, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
			return mp_seterr("MPI_Allreduce failed");
		o += (size_t)k;
	}
	return 0;
}
#endif

int
mp_dist_sum_f(float *buf, size_t n)
{
#ifdef MP_HAVE_MPI
	return sum_all(buf, n, sizeof *buf, MPI_FLOAT);
#else
	(void)buf;
	(void)n;
	return 0;
#endif
}

int
mp_dist_sum_d(double *buf, size_t n)
{
#ifdef MP_HAVE_MPI
	return sum_all(buf, n, sizeof *buf, MPI_DOUBLE);
#else
	(void)buf;
	(void)n;
	return 0;
#endif
}

int
mp_dist_same(const void *buf, size_t n)
{
#ifdef MP_HAVE_MPI
	if (dsize > 1) {
		uLong c = crc32(0L, Z_NULL, 0);
		c = crc32_z(c, (const Bytef *)buf, n);
		unsigned long long lo = c, hi = c;
		if (MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS ||
		    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
			return mp_seterr("MPI_Allreduce failed");
		return lo == hi;
	}
#else
	(void)buf;
	(void)n;
#endif
	return 1;
}

const char *
mp_dist_about(void)
{
#ifdef MP_HAVE_MPI
	static char s[MPI_MAX_LIBRARY_VERSION_STRING + 64];
	char v[MPI_MAX_LIBRARY_VERSION_STRING];
	int len = 0;
	/* callable before MPI_Init */
	if (MPI_Get_library_version(v, &len) != MPI_SUCCESS)
		len = 0;
	v[len < (int)sizeof v ? len : (int)sizeof v - 1] = 0;
	char *nl = strpbrk(v, ",\n");
	if (nl)
		*nl = 0;
	snprintf(s, sizeof s, "MPI: built in (%s): mpirun -np N runs data-parallel", len ? v : "version unknown");
	return s;
#else
	return "MPI: not built in (no mpicc at build time): one process";
#endif
}
