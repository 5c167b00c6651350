/* CSV datasets. */
#include "data/dataset.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lsr_dataset d;
    if (lsr_dataset_load_csv(&d, fuzz_file("data.csv", data, size)) == LSR_OK) lsr_dataset_free(&d);
    return 0;
}
