/*
 * Every error path of the C API, from C: NULL handles and arguments, wrong sizes, a backend
 * name outside the grammar, a backend that does not load, a calibration file of another shape,
 * a caller built against a newer header. Exits 0 when every call failed as it should.
 *
 *   errors <calibration of 8 query heads, 2 KV heads, head_dim 16>
 */
#include <shadowattn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

static void expect(const char *what, shadowattn_status got, shadowattn_status want,
                   const char *needle) {
    const char *message = shadowattn_last_error();
    if (got != want || (needle && !strstr(message, needle))) {
        fprintf(stderr, "FAIL %s: status %d (want %d), message \"%s\" (want \"%s\")\n", what, got,
                want, message, needle ? needle : "");
        failures++;
    } else {
        printf("ok   %s: %d \"%s\"\n", what, got, message);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s <calibration.json>\n", argv[0]);
        return 2;
    }
    shadowattn_npu *npu = NULL;
    shadowattn_compute *compute = NULL;
    shadowattn_context *ctx = NULL;

    expect("newer header", shadowattn_npu_open(SHADOWATTN_ABI_VERSION + 1, "cpu", &npu),
           SHADOWATTN_ERROR_ABI_VERSION, "implements ABI");
    expect("NULL name", shadowattn_npu_open(SHADOWATTN_ABI_VERSION, NULL, &npu),
           SHADOWATTN_ERROR_NULL_ARGUMENT, "`name`");
    expect("NULL out", shadowattn_compute_open(SHADOWATTN_ABI_VERSION, "cpu", NULL),
           SHADOWATTN_ERROR_NULL_ARGUMENT, "`out`");
    expect("bad name", shadowattn_npu_open(SHADOWATTN_ABI_VERSION, "gpu", &npu),
           SHADOWATTN_ERROR_BACKEND_NAME, "qnn[:htp[:<socModel>]]");
    if (!getenv("SHADOWATTN_NEURON_LIB")) {
        expect("backend that does not load",
               shadowattn_npu_open(SHADOWATTN_ABI_VERSION, "neuron", &npu),
               SHADOWATTN_ERROR_BACKEND_UNAVAILABLE, "libneuron_adapter.so");
    }
    if (shadowattn_npu_open(SHADOWATTN_ABI_VERSION, "sim:sa8255", &npu) != SHADOWATTN_OK ||
        shadowattn_compute_open(SHADOWATTN_ABI_VERSION, "cpu", &compute) != SHADOWATTN_OK) {
        fprintf(stderr, "FAIL opening sim:sa8255 and cpu: %s\n", shadowattn_last_error());
        return 1;
    }
    shadowattn_context_options options;
    expect("NULL options out", shadowattn_context_options_default(NULL),
           SHADOWATTN_ERROR_NULL_ARGUMENT, NULL);
    shadowattn_context_options_default(&options);
    options.max_q_len = 16;
    options.max_kv_len = 64;
    expect("NULL compute",
           shadowattn_context_create(SHADOWATTN_ABI_VERSION, npu, NULL, argv[1], &options, &ctx),
           SHADOWATTN_ERROR_NULL_ARGUMENT, "`compute`");
    expect("missing calibration file",
           shadowattn_context_create(SHADOWATTN_ABI_VERSION, npu, compute, "/nonexistent.json",
                                     &options, &ctx),
           SHADOWATTN_ERROR_IO, "/nonexistent.json");
    expect("context",
           shadowattn_context_create(SHADOWATTN_ABI_VERSION, npu, compute, argv[1], &options,
                                     &ctx),
           SHADOWATTN_OK, NULL);

    shadowattn_shape shape;
    shadowattn_shape_causal(4, 2, 16, 64, 32, &shape);
    expect("bad shape", shadowattn_shape_causal(4, 3, 16, 64, 32, &shape),
           SHADOWATTN_ERROR_INVALID_ARGUMENT, "cannot be grouped");
    size_t nq = 4 * 16 * 32, nk = 2 * 64 * 32;
    float *q = calloc(nq, sizeof *q), *k = calloc(nk, sizeof *k), *v = calloc(nk, sizeof *v);
    float *out = calloc(nq, sizeof *out);
    shadowattn_synthetic_chunk(&shape, 0.1f, 1, q, nq, k, nk, v, nk);
    expect("wrong size", shadowattn_context_run_chunk(ctx, 0, q, nq - 1, k, nk, v, nk, &shape,
                                                      out, nq, NULL),
           SHADOWATTN_ERROR_INVALID_ARGUMENT, "`q`");
    expect("NULL context", shadowattn_context_run_chunk(NULL, 0, q, nq, k, nk, v, nk, &shape, out,
                                                        nq, NULL),
           SHADOWATTN_ERROR_NULL_ARGUMENT, "`ctx`");
    expect("NULL output", shadowattn_context_run_chunk(ctx, 0, q, nq, k, nk, v, nk, &shape, NULL,
                                                       nq, NULL),
           SHADOWATTN_ERROR_NULL_ARGUMENT, "`out`");
    expect("calibration of another shape",
           shadowattn_context_run_chunk(ctx, 0, q, nq, k, nk, v, nk, &shape, out, nq, NULL),
           SHADOWATTN_ERROR_CALIBRATION, "the calibration is for");
    const char *kept = shadowattn_context_last_error(ctx);
    if (!kept || !strstr(kept, "the calibration is for")) {
        fprintf(stderr, "FAIL the context keeps its last error: \"%s\"\n", kept ? kept : "(null)");
        failures++;
    }
    expect("NULL report", shadowattn_report_counts(NULL, NULL, NULL),
           SHADOWATTN_ERROR_NULL_ARGUMENT, "`report`");

    free(q), free(k), free(v), free(out);
    shadowattn_context_free(ctx);
    shadowattn_compute_free(compute);
    shadowattn_npu_free(npu);
    shadowattn_context_free(NULL);
    if (failures) {
        fprintf(stderr, "%d error paths misbehaved\n", failures);
        return 1;
    }
    printf("every error path returned its status\n");
    return 0;
}
