/* Smoothing prior files. */
#include "data/dataset.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int k = 1 + data[0] % 16;
    float prior[16];
    lsr_prior_read(prior, fuzz_file("prior.txt", data + 1, size - 1), k);
    return 0;
}
