/* ccl.cl - connected components by block-based union-find (after Allegretti,
 * Bolelli and Grana's BUF/BKE: one union-find node per 2x2x2 block for 26-
 * connectivity, 2x2 blocks in-plane for 8-connectivity; single voxels for
 * 6/18/4, and when the volume holds several label values, since a block then
 * is not one component).  The union-find lives in global memory; unions use
 * atomic_min so that a root is always the smallest node index of its tree.
 *
 * Voxels are connected when both hold the same nonzero value.  The final
 * numbering is the C implementation's: components numbered 1, 2, ... in the
 * raster order of their first voxel (x fastest), optionally leaving out
 * components smaller than a minimum size (those become 0).
 *
 * Passes (host: opencl/cl_ccl.c):
 *   init      parent[n] = n
 *   merge     each voxel unites its node with the nodes of its backward
 *             neighbours (those before it in raster order) of the same value
 *   flatten   parent[n] = root(n)
 *   stats     first[root] = min voxel index, size[root] = voxel count
 *   count     flags per chunk of CH voxels: the first voxel of a kept component
 *   (host)    exclusive prefix sum of the chunk counts
 *   number    num[root] = chunk base + rank of its first voxel in the chunk
 *   final     out[v] = num[root(v)]
 */

/* a voxel's class: its bit pattern (es bytes), or 0/1 when binary */
inline ulong
val(__global const void *p, int es, int binary, size_t i)
{
	ulong v;
	switch (es) {
	case 1: v = ((__global const uchar *)p)[i]; break;
	case 2: v = ((__global const ushort *)p)[i]; break;
	case 4: v = ((__global const uint *)p)[i]; break;
	default: v = ((__global const ulong *)p)[i]; break;
	}
	return binary ? (ulong)(v != 0) : v;
}

inline uint
node_of(uint x, uint y, uint z, uint bx, uint by, uint bz, uint nbx, uint nby)
{
	return ((z / bz) * nby + (y / by)) * nbx + (x / bx);
}

inline uint
find_root(volatile __global uint *p, uint x)
{
	uint q = p[x];
	while (q != x) {
		x = q;
		q = p[x];
	}
	return x;
}

inline void
unite(volatile __global uint *p, uint a, uint b)
{
	for (;;) {
		a = find_root(p, a);
		b = find_root(p, b);
		if (a == b)
			return;
		if (a < b) {
			uint old = atomic_min(&p[b], a);
			if (old == b)
				return;
			b = old;
		} else {
			uint old = atomic_min(&p[a], b);
			if (old == a)
				return;
			a = old;
		}
	}
}

__kernel void
init(__global uint *parent, uint nnodes)
{
	uint i = get_global_id(0);
	if (i < nnodes)
		parent[i] = i;
}

/* conn: 6, 18, 26 (3D) or 4, 8 (in-plane) */
__kernel void
merge(__global const void *vol, int es, int binary, volatile __global uint *parent,
      uint nx, uint ny, uint nz, uint bx, uint by, uint bz, uint nbx, uint nby, int conn)
{
	uint x = get_global_id(0), y = get_global_id(1), z = get_global_id(2);
	size_t i;
	ulong v;
	uint me;
	int zlo;

	if (x >= nx || y >= ny || z >= nz)
		return;
	i = ((size_t)z * ny + y) * nx + x;
	v = val(vol, es, binary, i);
	if (v == 0)
		return;
	me = node_of(x, y, z, bx, by, bz, nbx, nby);
	zlo = (conn == 4 || conn == 8) ? 0 : -1;
	for (int dz = zlo; dz <= 0; dz++)
		for (int dy = -1; dy <= 1; dy++)
			for (int dx = -1; dx <= 1; dx++) {
				int d = (dx != 0) + (dy != 0) + (dz != 0);
				int xx = (int)x + dx, yy = (int)y + dy, zz = (int)z + dz;
				uint other;
				if (dz == 0 && (dy > 0 || (dy == 0 && dx >= 0)))
					continue;                  /* forward half or self */
				if (conn == 6 || conn == 4 ? d > 1 : conn == 18 ? d > 2 : 0)
					continue;
				if (xx < 0 || yy < 0 || zz < 0 || xx >= (int)nx || yy >= (int)ny)
					continue;
				other = node_of((uint)xx, (uint)yy, (uint)zz, bx, by, bz, nbx, nby);
				if (other == me)
					continue;
				if (val(vol, es, binary, ((size_t)zz * ny + (uint)yy) * nx + (uint)xx) != v)
					continue;
				unite(parent, me, other);
			}
}

__kernel void
flatten(volatile __global uint *parent, uint nnodes)
{
	uint i = get_global_id(0);
	if (i < nnodes)
		parent[i] = find_root(parent, i);
}

/* per block, its first foreground voxel (in raster order) records the block
 * in its root: first[root] = min voxel index (not needed with single-voxel
 * nodes, where the root is the first voxel), size[root] += the block's
 * foreground count (only when filtering by size).  One atomic per block. */
__kernel void
stats(__global const void *vol, int es, int binary, __global const uint *parent,
      __global uint *first, __global uint *size,
      uint nx, uint ny, uint nz, uint bx, uint by, uint bz, uint nbx, uint nby, uint minsize)
{
	uint x = get_global_id(0), y = get_global_id(1), z = get_global_id(2);
	uint i, r, cnt = 0, x0, y0, z0;

	if (x >= nx || y >= ny || z >= nz)
		return;
	i = (z * ny + y) * nx + x;
	if (val(vol, es, binary, i) == 0)
		return;
	x0 = x - x % bx;
	y0 = y - y % by;
	z0 = z - z % bz;
	for (uint zz = z0; zz < min(z0 + bz, nz); zz++)
		for (uint yy = y0; yy < min(y0 + by, ny); yy++)
			for (uint xx = x0; xx < min(x0 + bx, nx); xx++) {
				uint j = (zz * ny + yy) * nx + xx;
				if (val(vol, es, binary, j) == 0)
					continue;
				if (j < i)
					return;         /* not the block's first */
				cnt++;
			}
	r = parent[node_of(x, y, z, bx, by, bz, nbx, nby)];
	if (bx * by * bz > 1)
		atomic_min(&first[r], i);
	if (minsize > 1)
		atomic_add(&size[r], cnt);
}

/* is voxel i the first voxel of a component of at least minsize voxels */
inline int
is_first(__global const void *vol, int es, int binary, __global const uint *parent, __global const uint *first,
         __global const uint *size, uint i, uint nx, uint ny, uint bx, uint by, uint bz, uint nbx, uint nby, uint minsize)
{
	uint x, y, z, r;
	if (val(vol, es, binary, i) == 0)
		return 0;
	x = i % nx;
	y = (i / nx) % ny;
	z = i / nx / ny;
	r = parent[node_of(x, y, z, bx, by, bz, nbx, nby)];
	/* single-voxel nodes: the root is the smallest voxel index, the first */
	return (bx * by * bz == 1 ? r == i : first[r] == i) && (minsize <= 1 || size[r] >= minsize);
}

__kernel void
count(__global const void *vol, int es, int binary, __global const uint *parent, __global const uint *first,
      __global const uint *size, __global uint *counts, uint n, uint chunk,
      uint nx, uint ny, uint bx, uint by, uint bz, uint nbx, uint nby, uint minsize)
{
	uint c = get_global_id(0), k = 0;
	uint lo = c * chunk, hi;
	if (lo >= n)
		return;
	hi = min(lo + chunk, n);
	for (uint i = lo; i < hi; i++)
		k += is_first(vol, es, binary, parent, first, size, i, nx, ny, bx, by, bz, nbx, nby, minsize);
	counts[c] = k;
}

/* the chunks' counts into their exclusive prefix sums, in place, by one
 * work-group of at most 64 items; the total goes to counts[n] (the host
 * reads it back once, after the last kernel) */
__kernel void
scan(__global uint *counts, uint n)
{
	__local uint part[64];
	uint t = get_local_id(0), nt = get_local_size(0);
	uint per = (n + nt - 1) / nt, lo = min(t * per, n), hi = min(lo + per, n), s = 0;

	for (uint i = lo; i < hi; i++)
		s += counts[i];
	part[t] = s;
	barrier(CLK_LOCAL_MEM_FENCE);
	if (t == 0) {
		uint acc = 0;
		for (uint i = 0; i < nt; i++) {
			uint v = part[i];
			part[i] = acc;
			acc += v;
		}
		counts[n] = acc;
	}
	barrier(CLK_LOCAL_MEM_FENCE);
	s = part[t];
	for (uint i = lo; i < hi; i++) {
		uint v = counts[i];
		counts[i] = s;
		s += v;
	}
}

__kernel void
number(__global const void *vol, int es, int binary, __global const uint *parent, __global const uint *first,
       __global const uint *size, __global const uint *base, __global uint *num, uint n, uint chunk,
       uint nx, uint ny, uint bx, uint by, uint bz, uint nbx, uint nby, uint minsize)
{
	uint c = get_global_id(0), k;
	uint lo = c * chunk, hi;
	if (lo >= n)
		return;
	k = base[c];
	hi = min(lo + chunk, n);
	for (uint i = lo; i < hi; i++)
		if (is_first(vol, es, binary, parent, first, size, i, nx, ny, bx, by, bz, nbx, nby, minsize)) {
			uint x = i % nx, y = (i / nx) % ny, z = i / nx / ny;
			num[parent[node_of(x, y, z, bx, by, bz, nbx, nby)]] = ++k;
		}
}

/* out: uint32 component numbers (0: background or removed) */
__kernel void
final(__global const void *vol, int es, int binary, __global const uint *parent, __global const uint *num,
      __global uint *out, uint nx, uint ny, uint nz, uint bx, uint by, uint bz, uint nbx, uint nby)
{
	uint x = get_global_id(0), y = get_global_id(1), z = get_global_id(2);
	uint i;

	if (x >= nx || y >= ny || z >= nz)
		return;
	i = (z * ny + y) * nx + x;
	out[i] = val(vol, es, binary, i) == 0 ? 0 : num[parent[node_of(x, y, z, bx, by, bz, nbx, nby)]];
}
