// shadowattn compute kernels (OpenCL C 1.2). Built once per context with -D options:
//   KV_HALF  K and V are stored as half (vload_half), otherwise float. Accumulation is float.
// Every kernel that reduces in local memory needs a power-of-two work-group size.

#ifdef KV_HALF
typedef half kv_t;
#define LOAD_KV(p, i) vload_half((i), (p))
#else
typedef float kv_t;
#define LOAD_KV(p, i) ((p)[(i)])
#endif

// Tree reductions over `lsz` (a power of two) values in local memory; every work-item gets the result.
inline float reduce_max(__local float* red, uint lid, uint lsz) {
    for (uint s = lsz / 2; s > 0; s >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < s) red[lid] = fmax(red[lid], red[lid + s]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

inline float reduce_sum(__local float* red, uint lid, uint lsz) {
    for (uint s = lsz / 2; s > 0; s >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < s) red[lid] += red[lid + s];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

inline uint reduce_count(__local uint* red, uint lid, uint lsz) {
    for (uint s = lsz / 2; s > 0; s >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < s) red[lid] += red[lid + s];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    uint r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

// max|x| of each head: one work-group per head.
__kernel void absmax_heads(__global const float* x, uint per_head, __global float* out,
                           __local float* red) {
    uint head = get_group_id(0);
    uint lid = get_local_id(0), lsz = get_local_size(0);
    __global const float* h = x + (size_t)head * per_head;
    float m = 0.0f;
    for (uint i = lid; i < per_head; i += lsz) m = fmax(m, fabs(h[i]));
    red[lid] = m;
    float r = reduce_max(red, lid, lsz);
    if (lid == 0) out[head] = r;
}

// round-half-away-from-zero(x / s) saturated to [-128, 127], decided exactly: the quotient is
// only an estimate, corrected with fused multiply-adds whose sign is exact, so the result equals
// the golden f64 rule for normal (non-subnormal) values.
inline int quantize_one(float x, float s) {
    float a = fabs(x);
    float t = floor(a / s);
    if (!(t <= 200.0f)) t = 200.0f;   // saturates anyway (also catches inf)
    while (t > 0.0f && fma(-t, s, a) < 0.0f) t -= 1.0f;
    while (t < 200.0f && fma(-(t + 1.0f), s, a) >= 0.0f) t += 1.0f;
    if (fma(-(t + 0.5f), s, a) >= 0.0f) t += 1.0f;
    int q = (int)t;
    if (x < 0.0f) q = -q;
    return clamp(q, -128, 127);
}

// Symmetric INT8 quantization with one scale per head; one work-item per element.
__kernel void quantize_heads(__global const float* x, __global const float* scales,
                             uint per_head, uint total, __global char* out) {
    size_t i = get_global_id(0);
    if (i >= total) return;
    out[i] = (char)quantize_one(x[i], scales[i / per_head]);
}

// Order-preserving unsigned key of a score: kind 0 = f32 (IEEE total order), 1 = i32, 2 = i8,
// 3 = f16 bits (IEEE total order, as for f32).
inline uint score_key(__global const uchar* raw, uint kind, size_t idx) {
    if (kind == 0) {
        uint u = ((__global const uint*)raw)[idx];
        return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    }
    if (kind == 1) return ((__global const uint*)raw)[idx] ^ 0x80000000u;
    if (kind == 3) {
        uint u = (uint)((__global const ushort*)raw)[idx];
        return (u & 0x8000u) ? (~u & 0xFFFFu) : (u | 0x8000u);
    }
    return (uint)((int)((__global const char*)raw)[idx] + 128);
}

// Top-k of each row over its causal prefix: the k highest keys, lower index first among equal
// keys, written in ascending key order at out[row_start[row]..]. One work-group per row.
// Local memory: 2 * lsz uints.
__kernel void topk_rows(__global const uchar* scores, uint kind, uint cols, uint q_offset,
                        uint causal, __global const uint* row_k, __global const uint* row_start,
                        __global uint* out, __local uint* scratch) {
    uint row = get_group_id(0);
    uint lid = get_local_id(0), lsz = get_local_size(0);
    uint valid = causal ? min(q_offset + row + 1, cols) : cols;
    uint k = row_k[row];
    size_t base = (size_t)row * cols;
    __local uint* red = scratch;
    __local uint* scan = scratch + lsz;

    // The k-th largest key: the largest t with #(key >= t) >= k, built bit by bit from the top.
    uint t = 0;
    for (int bit = 31; bit >= 0; --bit) {
        uint cand = t | (1u << bit);
        uint c = 0;
        for (uint j = lid; j < valid; j += lsz) c += score_key(scores, kind, base + j) >= cand;
        red[lid] = c;
        if (reduce_count(red, lid, lsz) >= k) t = cand;
    }

    // Keys above t are all kept; of the keys equal to t, the first (k - #above) in index order.
    uint chunk = (valid + lsz - 1) / lsz;
    uint lo = min(lid * chunk, valid), hi = min(lo + chunk, valid);
    uint gt = 0, eq = 0;
    for (uint j = lo; j < hi; ++j) {
        uint key = score_key(scores, kind, base + j);
        gt += key > t;
        eq += key == t;
    }
    red[lid] = gt;
    scan[lid] = eq;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        uint sg = 0, se = 0;
        for (uint i = 0; i < lsz; ++i) {
            uint g = red[i], e = scan[i];
            red[i] = sg;
            scan[i] = se;
            sg += g;
            se += e;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    uint above = red[lid], equal = scan[lid];
    uint total_above = 0;
    // #above over the whole row: the last prefix plus the last chunk's own count.
    {
        uint last_lo = min((lsz - 1) * chunk, valid), last_hi = min(last_lo + chunk, valid);
        uint own = 0;
        for (uint j = last_lo; j < last_hi; ++j) own += score_key(scores, kind, base + j) > t;
        total_above = red[lsz - 1] + own;
    }
    uint take_equal = k - total_above;
    __global uint* dst = out + row_start[row];
    for (uint j = lo; j < hi; ++j) {
        uint key = score_key(scores, kind, base + j);
        if (key > t) {
            dst[above + min(equal, take_equal)] = j;
            above++;
        } else if (key == t) {
            if (equal < take_equal) dst[above + equal] = j;
            equal++;
        }
    }
}

// Softmax(scale * q.K_S) . V_S per query row with an online (tiled) softmax. With `sparse`, row
// (h, i) attends to indices[offsets[h * q_len + i] ..]; otherwise to keys 0..valid. One work-group
// per (head, row); tiles of lsz keys. Local memory: q (d), acc (d), p (lsz), red (lsz) floats.
__kernel void attend(__global const float* q, __global const kv_t* k, __global const kv_t* v,
                     __global float* out, __global const uint* offsets,
                     __global const uint* indices, uint sparse, uint q_len, uint kv_len, uint d,
                     uint group, uint q_offset, uint causal, float scale,
                     __local float* qv, __local float* acc, __local float* p,
                     __local float* red) {
    uint gid = get_group_id(0);
    uint h = gid / q_len, i = gid % q_len;
    uint lid = get_local_id(0), lsz = get_local_size(0);
    size_t qbase = (size_t)gid * d;
    size_t kvbase = (size_t)(h / group) * kv_len;
    for (uint c = lid; c < d; c += lsz) {
        qv[c] = q[qbase + c];
        acc[c] = 0.0f;
    }
    uint first = 0, n;
    if (sparse) {
        first = offsets[gid];
        n = offsets[gid + 1] - first;
    } else {
        n = causal ? min(q_offset + i + 1, kv_len) : kv_len;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float m = -INFINITY, l = 0.0f;
    for (uint t0 = 0; t0 < n; t0 += lsz) {
        uint cnt = min(lsz, n - t0);
        float s = -INFINITY;
        if (lid < cnt) {
            uint j = sparse ? indices[first + t0 + lid] : t0 + lid;
            size_t kb = (kvbase + j) * d;
            float dot = 0.0f;
            for (uint c = 0; c < d; ++c) dot = fma(qv[c], LOAD_KV(k, kb + c), dot);
            s = dot * scale;
        }
        red[lid] = s;
        float mnew = fmax(m, reduce_max(red, lid, lsz));
        float corr = exp(m - mnew);
        float e = lid < cnt ? exp(s - mnew) : 0.0f;
        p[lid] = e;
        red[lid] = e;
        l = l * corr + reduce_sum(red, lid, lsz);
        for (uint c = lid; c < d; c += lsz) {
            float a = acc[c] * corr;
            for (uint u = 0; u < cnt; ++u) {
                uint j = sparse ? indices[first + t0 + u] : t0 + u;
                a = fma(p[u], LOAD_KV(v, (kvbase + j) * d + c), a);
            }
            acc[c] = a;
        }
        m = mnew;
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (uint c = lid; c < d; c += lsz) out[qbase + c] = acc[c] / l;
}
