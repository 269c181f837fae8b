/*
 * One prefill chunk with shadowAttn from C: open the simulated Snapdragon 8 Gen 3 and the
 * golden CPU kernels, build a context from a calibration file, run the seeded synthetic chunk
 * of `shadowattn run`, compare it with dense attention and print the same accuracy lines as
 * `shadowattn run --calibration <file>` does for the same shape and seed.
 *
 *   prefill <calibration.json> [q_heads kv_heads q_len kv_len head_dim [seed [npu [compute]]]]
 *
 * Build (after the install step of the README, "Use from C / C++"):
 *   cc -std=c11 prefill.c $(pkg-config --cflags --libs shadowattn) -o prefill
 */
#include <shadowattn.h>

#include <stdio.h>
#include <stdlib.h>

/* Prints the failure of `call` and its message, and returns 1 from main's caller. */
#define CHECK(call)                                                                    \
    do {                                                                               \
        shadowattn_status status_ = (call);                                            \
        if (status_ != SHADOWATTN_OK) {                                                \
            fprintf(stderr, "error: %s failed with status %d: %s\n", #call, status_,   \
                    shadowattn_last_error());                                          \
            goto fail;                                                                 \
        }                                                                              \
    } while (0)

/* FNV-1a over bytes, to print a fingerprint of the output and the selection. */
static unsigned long long fnv1a(unsigned long long h, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 0x100000001b3ULL;
    }
    return h;
}

static unsigned arg(int argc, char **argv, int i, unsigned fallback) {
    return argc > i ? (unsigned)strtoul(argv[i], NULL, 10) : fallback;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr,
                "usage: %s <calibration.json> [q_heads kv_heads q_len kv_len head_dim [seed "
                "[npu [compute]]]]\n",
                argv[0]);
        return 2;
    }
    const char *calibration = argv[1];
    unsigned q_heads = arg(argc, argv, 2, 4), kv_heads = arg(argc, argv, 3, 2);
    unsigned q_len = arg(argc, argv, 4, 16), kv_len = arg(argc, argv, 5, 64);
    unsigned head_dim = arg(argc, argv, 6, 32);
    unsigned long long seed = argc > 7 ? strtoull(argv[7], NULL, 10) : 1;
    const char *npu_name = argc > 8 ? argv[8] : "sim:snapdragon-8-gen-3";
    const char *compute_name = argc > 9 ? argv[9] : "cpu";

    int code = 1;
    shadowattn_npu *npu = NULL;
    shadowattn_compute *compute = NULL;
    shadowattn_context *ctx = NULL;
    shadowattn_report *report = NULL;
    float *q = NULL, *k = NULL, *v = NULL, *sq = NULL, *sk = NULL, *sv = NULL;
    float *out = NULL, *dense = NULL;

    printf("library: shadowattn %s (ABI %u)\n", shadowattn_version(), shadowattn_abi_version());
    shadowattn_shape shape;
    CHECK(shadowattn_shape_causal(q_heads, kv_heads, q_len, kv_len, head_dim, &shape));
    size_t nq = (size_t)q_heads * q_len * head_dim, nk = (size_t)kv_heads * kv_len * head_dim;
    q = malloc(nq * sizeof *q), k = malloc(nk * sizeof *k), v = malloc(nk * sizeof *v);
    sq = malloc(nq * sizeof *q), sk = malloc(nk * sizeof *k), sv = malloc(nk * sizeof *v);
    out = malloc(nq * sizeof *out), dense = malloc(nq * sizeof *dense);
    if (!q || !k || !v || !sq || !sk || !sv || !out || !dense) {
        fprintf(stderr, "error: out of memory\n");
        goto fail;
    }

    CHECK(shadowattn_npu_open(SHADOWATTN_ABI_VERSION, npu_name, &npu));
    CHECK(shadowattn_compute_open(SHADOWATTN_ABI_VERSION, compute_name, &compute));
    char name[256];
    CHECK(shadowattn_npu_describe(npu, name, sizeof name, NULL));
    printf("npu_backend: %s\n", name);

    /* The INT8 pilot's output scale comes from a sample chunk (another seed), as in `run`. */
    float acc_range = 0;
    CHECK(shadowattn_synthetic_chunk(&shape, 0.1f, seed + 2000, sq, nq, sk, nk, sv, nk));
    CHECK(shadowattn_int8_accumulator_range(sq, nq, sk, nk, sv, nk, &shape, &acc_range));

    shadowattn_context_options options;
    CHECK(shadowattn_context_options_default(&options));
    options.max_q_len = q_len;
    options.max_kv_len = kv_len;
    options.int8_acc_range = acc_range;
    CHECK(shadowattn_context_create(SHADOWATTN_ABI_VERSION, npu, compute, calibration, &options,
                                    &ctx));

    CHECK(shadowattn_synthetic_chunk(&shape, 0.1f, seed, q, nq, k, nk, v, nk));
    CHECK(shadowattn_context_run_chunk(ctx, 0, q, nq, k, nk, v, nk, &shape, out, nq, &report));
    CHECK(shadowattn_dense_attention(compute, q, nq, k, nk, v, nk, &shape, dense, nq));

    size_t heads = 0, launches = 0;
    CHECK(shadowattn_report_counts(report, &heads, &launches));
    printf("launches: %zu\n", launches);
    shadowattn_accuracy acc;
    CHECK(shadowattn_accuracy_of(compute, q, nq, k, nk, v, nk, &shape, report, out, dense, nq,
                                 &acc));
    printf("topk_recall_mean: %.4f\n", acc.recall_mean);
    printf("topk_recall_p5: %.4f\n", acc.recall_p5);
    printf("attention_mass_mean: %.4f\n", acc.mass_mean);
    printf("oracle_mass_mean: %.4f\n", acc.oracle_mass_mean);
    printf("rel_l2_mean: %.5f\n", acc.rel_l2_mean);
    printf("rel_l2_p95: %.5f\n", acc.rel_l2_p95);
    printf("cosine_mean: %.6f\n", acc.cosine_mean);
    char fallback[1024];
    CHECK(shadowattn_report_fallback(report, fallback, sizeof fallback, NULL));
    printf("fallback: %s\n", fallback[0] ? fallback : "none");
    /* Fingerprints of the output's bits and of every selected key, row by row. */
    unsigned long long out_fp = fnv1a(0xcbf29ce484222325ULL, out, nq * sizeof *out);
    unsigned long long sel_fp = 0xcbf29ce484222325ULL;
    for (size_t h = 0; h < heads; h++) {
        for (size_t row = 0; row < q_len; row++) {
            const uint32_t *keys = NULL;
            size_t count = 0;
            CHECK(shadowattn_report_selection(report, h, row, &keys, &count));
            sel_fp = fnv1a(sel_fp, &count, sizeof count);
            sel_fp = fnv1a(sel_fp, keys, count * sizeof *keys);
        }
    }
    printf("output_fnv1a: %016llx\n", out_fp);
    printf("selection_fnv1a: %016llx\n", sel_fp);
    shadowattn_times times;
    CHECK(shadowattn_report_times(report, &times));
    printf("time_chunk_ms: %.2f (measured)\n", times.measured_ns / 1e6);
    printf("sim_npu_ms: %.3f (simulated launches of this chunk)\n", times.simulated_npu_ns / 1e6);
    printf("projected_ms: %.3f (the plan, simulator cost model)\n", times.projected_ns / 1e6);
    code = 0;

fail:
    shadowattn_report_free(report);
    shadowattn_context_free(ctx);
    shadowattn_compute_free(compute);
    shadowattn_npu_free(npu);
    free(q), free(k), free(v), free(sq), free(sk), free(sv), free(out), free(dense);
    return code;
}
