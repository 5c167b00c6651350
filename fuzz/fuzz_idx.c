/* IDX images and labels, plain and gzip: the input is split in two files
 * at a position given by its first byte. */
#include "data/dataset.h"
#include "fuzz_input.h"
#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const size_t cut = 1 + (size_t)data[0] * (size - 1) / 256;
    char images[128], labels[128];
    snprintf(images, sizeof images, "%s", fuzz_file("images", data + 1, cut - 1));
    snprintf(labels, sizeof labels, "%s", fuzz_file("labels", data + cut, size - cut));
    lsr_dataset d;
    if (lsr_dataset_load_idx(&d, images, labels) == LSR_OK) lsr_dataset_free(&d);
    /* the same images through gzip */
    gzFile g = gzopen(images, "wb");
    gzwrite(g, data + 1, (unsigned)(cut - 1));
    gzclose(g);
    if (lsr_dataset_load_idx(&d, images, labels) == LSR_OK) lsr_dataset_free(&d);
    return 0;
}
