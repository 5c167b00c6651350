/* Model spec strings, then a forward and backward pass of what parses. */
#include "fuzz_input.h"
#include "net/net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3 || size > 512) return 0;
    char spec[600];
    memcpy(spec, data + 2, size - 2);
    spec[size - 2] = '\0';
    const lsr_shape input = {1 + data[0] % 12, 1 + data[1] % 12, 1 + (data[0] >> 4) % 3};
    lsr_model m;
    if (lsr_model_init(&m, spec, input, 1 + data[1] % 5)) return 0;
    if (m.n_params < (1 << 18) && lsr_model_reserve(&m, 2) == LSR_OK) {
        lsr_rng rng;
        lsr_rng_seed(&rng, 1);
        lsr_model_init_params(&m, LSR_INIT_HE, &rng);
        float x[2 * 12 * 12 * 3];
        for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
            x[i] = (float)i / 100.0f;
        const float *z = lsr_model_forward(&m, x, 2, 1, &rng);
        lsr_model_backward(&m, z, 2, LSR_GRAD_PARAMS | LSR_GRAD_INPUT);
    }
    lsr_model_clear(&m);
    return 0;
}
