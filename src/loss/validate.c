#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "loss_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static _Thread_local char last_error[1024];
static _Thread_local lsr_status last_status;

lsr_status lsr__fail(lsr_status status, const char *fmt, ...) {
    char message[sizeof last_error]; /* fmt's arguments may quote last_error itself */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    memcpy(last_error, message, sizeof last_error);
    last_status = status;
    return status;
}

lsr_status lsr__failed(void) { return last_status; }

void lsr__clear_error(void) { last_error[0] = '\0'; }

const char *lsr_last_error(void) { return last_error; }

const char *lsr_status_name(lsr_status status) {
    static const char *const names[LSR_STATUS_COUNT] = {
        [LSR_OK] = "LSR_OK",
        [LSR_ERROR_NULL_ARGUMENT] = "LSR_ERROR_NULL_ARGUMENT",
        [LSR_ERROR_SIZE] = "LSR_ERROR_SIZE",
        [LSR_ERROR_LABEL] = "LSR_ERROR_LABEL",
        [LSR_ERROR_SMOOTHING] = "LSR_ERROR_SMOOTHING",
        [LSR_ERROR_PRIOR] = "LSR_ERROR_PRIOR",
        [LSR_ERROR_WEIGHT] = "LSR_ERROR_WEIGHT",
        [LSR_ERROR_TARGET] = "LSR_ERROR_TARGET",
        [LSR_ERROR_OVERLAP] = "LSR_ERROR_OVERLAP",
        [LSR_ERROR_NONFINITE] = "LSR_ERROR_NONFINITE",
        [LSR_ERROR_OPTION] = "LSR_ERROR_OPTION",
        [LSR_ERROR_UNSUPPORTED] = "LSR_ERROR_UNSUPPORTED",
        [LSR_ERROR_OUT_OF_MEMORY] = "LSR_ERROR_OUT_OF_MEMORY",
        [LSR_ERROR_IO] = "LSR_ERROR_IO",
        [LSR_ERROR_FORMAT] = "LSR_ERROR_FORMAT",
        [LSR_ERROR_MISMATCH] = "LSR_ERROR_MISMATCH",
        [LSR_STOPPED] = "LSR_STOPPED",
    };
    if ((unsigned)status >= LSR_STATUS_COUNT) return "LSR_STATUS_UNKNOWN";
    return names[status];
}

lsr_loss_options lsr_loss_options_default(void) {
    lsr_loss_options o = {0};
    o.smoothing = 0.0f;
    o.convention = LSR_SMOOTHING_ALL;
    o.ignore_index = LSR_IGNORE_INDEX_DEFAULT;
    o.reduction = LSR_REDUCTION_MEAN;
    return o;
}

size_t lsr_loss_options_size(void) { return sizeof(lsr_loss_options); }

size_t lsr_loss_stats_size(void) { return sizeof(lsr_loss_stats); }

lsr_isa lsr_isa_detect(void) {
#if defined(LSR_HAVE_X86_KERNELS)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
        return LSR_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return LSR_ISA_AVX2;
#endif
    return LSR_ISA_SCALAR;
}

int lsr__cpu_has_avx512_bf16(void) {
#if defined(LSR_HAVE_X86_KERNELS) && defined(LSR_HAVE_AVX512BF16_KERNELS)
    __builtin_cpu_init();
    return lsr_isa_detect() == LSR_ISA_AVX512 && __builtin_cpu_supports("avx512bf16") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

const char *lsr_isa_name(lsr_isa isa) {
    switch (isa) {
    case LSR_ISA_AUTO:
        return "auto";
    case LSR_ISA_SCALAR:
        return "scalar";
    case LSR_ISA_AVX2:
        return "avx2";
    case LSR_ISA_AVX512:
        return "avx512";
    }
    return "unknown";
}

lsr__span lsr__rows_span(const char *name, const void *p, int64_t n, int64_t k, int64_t stride,
                         size_t elem) {
    lsr__span r = {name, (uintptr_t)p, (uintptr_t)p};
    if (p && n > 0) r.end = r.begin + ((size_t)(n - 1) * (size_t)stride + (size_t)k) * elem;
    return r;
}

static int spans_overlap(lsr__span a, lsr__span b) {
    return a.begin < a.end && b.begin < b.end && a.begin < b.end && b.begin < a.end;
}

lsr_status lsr__check_overlaps(const lsr__span *outputs, int n_outputs, const lsr__span *inputs,
                               int n_inputs, int allow_out, int allow_in) {
    for (int o = 0; o < n_outputs; o++) {
        for (int i = 0; i < n_inputs; i++)
            if (!(o == allow_out && i == allow_in) && spans_overlap(outputs[o], inputs[i]))
                return lsr__fail(LSR_ERROR_OVERLAP, "%s overlaps %s", outputs[o].name,
                                 inputs[i].name);
        for (int p = o + 1; p < n_outputs; p++)
            if (spans_overlap(outputs[o], outputs[p]))
                return lsr__fail(LSR_ERROR_OVERLAP, "%s overlaps %s", outputs[o].name,
                                 outputs[p].name);
    }
    return LSR_OK;
}

lsr_status lsr__check_option_values(const lsr_loss_options *o) {
    if (!(o->smoothing >= 0.0f && o->smoothing <= 1.0f))
        return lsr__fail(LSR_ERROR_SMOOTHING, "smoothing = %g: must be in [0, 1]",
                         (double)o->smoothing);
    if (o->convention != LSR_SMOOTHING_ALL && o->convention != LSR_SMOOTHING_OTHERS)
        return lsr__fail(LSR_ERROR_OPTION, "convention = %d: not a smoothing convention",
                         (int)o->convention);
    if (o->reduction != LSR_REDUCTION_MEAN && o->reduction != LSR_REDUCTION_SUM &&
        o->reduction != LSR_REDUCTION_NONE)
        return lsr__fail(LSR_ERROR_OPTION, "reduction = %d: not a reduction", (int)o->reduction);
    if (!(o->z_loss >= 0.0f && isfinite(o->z_loss)))
        return lsr__fail(LSR_ERROR_OPTION, "z_loss = %g: must be finite and >= 0",
                         (double)o->z_loss);
    if (o->threads < 0)
        return lsr__fail(LSR_ERROR_OPTION, "threads = %d: must be >= 0", o->threads);
    if (o->logits_dtype != LSR_DTYPE_FLOAT32 && o->logits_dtype != LSR_DTYPE_BFLOAT16)
        return lsr__fail(LSR_ERROR_OPTION, "logits_dtype = %d: not a dtype", (int)o->logits_dtype);
    if (o->grad_dtype != LSR_DTYPE_FLOAT32 && o->grad_dtype != LSR_DTYPE_BFLOAT16)
        return lsr__fail(LSR_ERROR_OPTION, "grad_dtype = %d: not a dtype", (int)o->grad_dtype);
    return LSR_OK;
}

lsr_status lsr__check_distribution(double *sum_out, const float *v, int64_t k, const char *name,
                                   int must_sum_to_one, lsr_status status) {
    double sum = 0.0;
    for (int64_t i = 0; i < k; i++) {
        if (!isfinite(v[i]) || v[i] < 0.0f)
            return lsr__fail(status, "%s[%lld] = %g: must be finite and >= 0", name, (long long)i,
                             (double)v[i]);
        sum += v[i];
    }
    if (sum_out) *sum_out = sum;
    if (must_sum_to_one && fabs(sum - 1.0) > 1e-4)
        return lsr__fail(status, "%s sums to %.7g: must sum to 1 within 1e-4", name, sum);
    return LSR_OK;
}

lsr_status lsr__validate(loss_call *call, int soft, float *loss, void *grad, lsr_loss_stats *stats,
                         const void *logits, const int64_t *labels, const float *targets, int64_t n,
                         int64_t k, int64_t stride, const lsr_loss_options *options) {
    lsr__clear_error();
    lsr_loss_options opt = options ? *options : lsr_loss_options_default();

    if (n < 0) return lsr__fail(LSR_ERROR_SIZE, "n = %lld: must be >= 0", (long long)n);
    if (k < 1 || k > LSR_MAX_CLASSES)
        return lsr__fail(LSR_ERROR_SIZE, "k = %lld: must be in [1, %d]", (long long)k,
                         LSR_MAX_CLASSES);
    if (stride < k)
        return lsr__fail(LSR_ERROR_SIZE, "stride = %lld: must be >= k = %lld", (long long)stride,
                         (long long)k);
    if (n > 0 && /* in floats: the largest element of either dtype */
        (uint64_t)(n - 1) > ((uint64_t)SIZE_MAX / sizeof(float) - (uint64_t)k) / (uint64_t)stride)
        return lsr__fail(LSR_ERROR_SIZE, "n = %lld rows of stride %lld do not fit in memory",
                         (long long)n, (long long)stride);
    if (n > 0 && !logits) return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "logits is NULL");
    if (n > 0 && (soft ? !targets : !labels))
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, soft ? "targets is NULL" : "labels is NULL");

    LSR_TRY(lsr__check_option_values(&opt));
    if (opt.convention == LSR_SMOOTHING_OTHERS && !opt.prior && k == 1 && opt.smoothing > 0.0f)
        return lsr__fail(LSR_ERROR_SMOOTHING,
                         "smoothing = %g with the 'others' convention needs k >= 2",
                         (double)opt.smoothing);
    if (soft && opt.ignore_index != LSR_IGNORE_INDEX_DEFAULT)
        return lsr__fail(LSR_ERROR_OPTION,
                         "ignore_index = %lld: soft targets do not take ignore_index",
                         (long long)opt.ignore_index);

    lsr_isa isa = opt.isa;
    lsr_isa best = lsr_isa_detect();
    if (isa == LSR_ISA_AUTO) {
        isa = best;
    } else if (isa != LSR_ISA_SCALAR && isa != LSR_ISA_AVX2 && isa != LSR_ISA_AVX512) {
        return lsr__fail(LSR_ERROR_OPTION, "isa = %d: not an instruction set", (int)isa);
    } else if (isa > best) {
        return lsr__fail(LSR_ERROR_UNSUPPORTED, "isa %s: not supported by this CPU (best: %s)",
                         lsr_isa_name(isa), lsr_isa_name(best));
    }

    if (opt.prior) {
        lsr_status s = lsr__check_distribution(NULL, opt.prior, k, "prior", 1, LSR_ERROR_PRIOR);
        if (s) return s;
    }
    if (opt.class_weights) {
        lsr_status s = lsr__check_distribution(NULL, opt.class_weights, k, "class_weights", 0,
                                               LSR_ERROR_WEIGHT);
        if (s) return s;
    }

    /* Outputs may not overlap inputs, except grad == logits (in place). */
    const int64_t loss_count = opt.reduction == LSR_REDUCTION_NONE ? n : 1;
    const lsr__span outputs[] = {
        lsr__rows_span("loss", loss, 1, loss_count, loss_count, sizeof(float)),
        lsr__rows_span("grad", grad, n, k, stride, lsr__dtype_size(opt.grad_dtype)),
        lsr__rows_span("stats", stats, 1, 1, 1, sizeof *stats)};
    const lsr__span inputs[] = {
        lsr__rows_span("logits", logits, n, k, stride, lsr__dtype_size(opt.logits_dtype)),
        lsr__rows_span("labels", labels, n, 1, 1, sizeof(int64_t)),
        lsr__rows_span("targets", targets, n, k, stride, sizeof(float)),
        lsr__rows_span("prior", opt.prior, 1, k, k, sizeof(float)),
        lsr__rows_span("class_weights", opt.class_weights, 1, k, k, sizeof(float))};
    if (grad && grad == logits && n > 0 && opt.grad_dtype != opt.logits_dtype)
        return lsr__fail(LSR_ERROR_OVERLAP,
                         "grad is logits (in place) but grad_dtype %s differs from logits_dtype %s",
                         opt.grad_dtype == LSR_DTYPE_BFLOAT16 ? "bfloat16" : "float32",
                         opt.logits_dtype == LSR_DTYPE_BFLOAT16 ? "bfloat16" : "float32");
    LSR_TRY(lsr__check_overlaps(outputs, 3, inputs, 5, grad == logits ? 1 : -1, 0));

    if (!soft) {
        for (int64_t i = 0; i < n; i++) {
            int64_t y = labels[i];
            if (y != opt.ignore_index && (y < 0 || y >= k))
                return lsr__fail(LSR_ERROR_LABEL,
                                 "labels[%lld] = %lld: must be in [0, %lld) or ignore_index "
                                 "%lld",
                                 (long long)i, (long long)y, (long long)k,
                                 (long long)opt.ignore_index);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            const float *t = targets + i * stride;
            for (int64_t j = 0; j < k; j++)
                if (!isfinite(t[j]) || t[j] < 0.0f)
                    return lsr__fail(LSR_ERROR_TARGET,
                                     "targets[%lld][%lld] = %g: must be finite and >= 0",
                                     (long long)i, (long long)j, (double)t[j]);
        }
    }

    lsr__loss_call_fill(call, loss, grad, stats, logits, labels, targets, n, k, stride, &opt);
    return LSR_OK;
}

void lsr__loss_call_fill(loss_call *call, float *loss, void *grad, lsr_loss_stats *stats,
                         const void *logits, const int64_t *labels, const float *targets, int64_t n,
                         int64_t k, int64_t stride, const lsr_loss_options *opt) {
    int threads = opt->threads;
#ifdef _OPENMP
    if (threads == 0) threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    if (threads < 1) threads = 1;
    call->loss = loss;
    call->grad = grad;
    call->stats = stats;
    call->logits = logits;
    call->labels = labels;
    call->targets = targets;
    call->n = n;
    call->k = k;
    call->stride = stride;
    call->opt = *opt;
    call->isa = opt->isa == LSR_ISA_AUTO ? lsr_isa_detect() : opt->isa;
    call->threads = threads;
}
