/* Class names for the lsr command: Fashion-MNIST's, known when the data is
 * Debian's copy; those of --class-names FILE; and the label a command
 * shows for a class (the model's name, else the data's, else "class k"). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const fashion_names[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                              "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                              "Bag",         "Ankle boot"};

const char *const *cli_data_class_names(const char *dir, int classes) {
    if (classes != 10 || !dir) return NULL;
    char *real = realpath(dir, NULL), *debian = realpath(LSR_FASHION_MNIST_DIR, NULL);
    const int same = real && debian && !strcmp(real, debian);
    free(real);
    free(debian);
    return same ? fashion_names : NULL;
}

lsr_status cli_load_class_names(const char ***names, const char *path, int k) {
    *names = NULL;
    FILE *f = fopen(path, "r");
    if (!f) return lsr__fail(LSR_ERROR_IO, "--class-names %s: %s", path, strerror(errno));
    /* the k pointers, then the k names */
    const char **list = calloc(1, (size_t)k * (sizeof *list + LSR_CLASS_NAME_MAX + 1));
    char(*text)[LSR_CLASS_NAME_MAX + 1] = list ? (void *)(list + k) : NULL;
    lsr_status st = list ? LSR_OK : lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int n = 0, lineno = 0;
    while (!st && (got = getline(&line, &cap, f)) != -1) {
        lineno++;
        size_t len = (size_t)got;
        if (memchr(line, '\0', len)) { /* would cut the name short, unseen */
            st = lsr__fail(LSR_ERROR_FORMAT, "--class-names %s: line %d holds a NUL byte", path,
                           lineno);
            break;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ' ||
                       line[len - 1] == '\t'))
            line[--len] = '\0';
        if (n == k) { /* blank lines may end the file */
            if (len)
                st = lsr__fail(LSR_ERROR_FORMAT,
                               "--class-names %s: line %d: more names than the data's %d classes",
                               path, lineno, k);
            continue;
        }
        if (len >= LSR_CLASS_NAME_MAX)
            st = lsr__fail(LSR_ERROR_FORMAT,
                           "--class-names %s: line %d: a name of %zu bytes (at most %d)", path,
                           lineno, len, LSR_CLASS_NAME_MAX - 1);
        else if (!len)
            st = lsr__fail(LSR_ERROR_FORMAT, "--class-names %s: line %d is empty (one name a line)",
                           path, lineno);
        else
            list[n] = strcpy(text[n], line), n++;
    }
    if (!st && ferror(f))
        st = lsr__fail(LSR_ERROR_IO, "--class-names %s: cannot read: %s", path, strerror(errno));
    free(line);
    fclose(f);
    if (!st && n < k)
        st = lsr__fail(LSR_ERROR_FORMAT, "--class-names %s: %d names for the data's %d classes",
                       path, n, k);
    if (st)
        free(list);
    else
        *names = list;
    return st;
}

lsr_status cli_read_class_names(lsr_model *m, const char *path) {
    const char **names;
    LSR_TRY(cli_load_class_names(&names, path, lsr_model_classes(m)));
    lsr_status st = lsr_model_set_class_names(m, names);
    if (st) st = lsr__fail(st, "--class-names %s: %s", path, lsr_last_error());
    free(names);
    return st;
}

const char **cli_class_names_of(const lsr_model *m, const char *const *data_names, int k) {
    const char **names = calloc((size_t)(k > 0 ? k : 1), sizeof *names);
    if (!names) {
        lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    for (int c = 0; c < k; c++) {
        names[c] = lsr_model_class_name(m, c);
        if (!names[c] && data_names) names[c] = data_names[c];
    }
    return names;
}

const char *cli_class_label(char *buf, size_t size, const lsr_model *m,
                            const char *const *data_names, int k) {
    const char *name = lsr_model_class_name(m, k);
    if (!name && data_names) name = data_names[k];
    if (name)
        snprintf(buf, size, "%s", name);
    else
        snprintf(buf, size, "class %d", k);
    return buf;
}

int cli_text_columns(const char *s) {
    /* one column a code point (a byte not 0x80-0xBF), enough for class
     * names: a wide CJK character counts as one, a combining mark as one */
    int n = 0;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        n += (*c & 0xC0) != 0x80;
    return n;
}
