/* Class names for the lsr command: Fashion-MNIST's, known when the data is
 * Debian's copy; those of --class-names FILE; and the label a command
 * shows for a class (the model's name, else the data's, else "class k"). */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "../train/train.h"
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
    if (!st && lsr_class_names_fit(list, k, "class names", LSR_ERROR_OPTION)) /* as a model's */
        st = lsr__fail(lsr__failed(), "--class-names %s: %s", path, lsr_last_error());
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

/* The columns of the character at s, and its bytes: by the C library's
 * wcwidth in the C.UTF-8 locale (an East Asian wide character 2, a
 * combining mark 0, whatever the user's locale), or 1 a code point where
 * that locale is missing or s is not UTF-8. */
static int char_columns(const char *s, size_t *bytes) {
    static locale_t utf8;
    static int tried;
    if (!tried) {
        tried = 1;
        utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    }
    if (utf8) {
        const locale_t before = uselocale(utf8);
        mbstate_t state;
        memset(&state, 0, sizeof state);
        wchar_t wc;
        const size_t n = mbrtowc(&wc, s, strnlen(s, MB_LEN_MAX), &state);
        const int w = n > 0 && n < (size_t)-2 ? wcwidth(wc) : -1;
        uselocale(before);
        if (n > 0 && n < (size_t)-2) {
            *bytes = n;
            return w >= 0 ? w : 1;
        }
    }
    size_t n = 1;
    while ((s[n] & 0xC0) == 0x80)
        n++;
    *bytes = n;
    return 1;
}

int cli_text_columns(const char *s) {
    int columns = 0;
    for (size_t bytes; *s; s += bytes)
        columns += char_columns(s, &bytes);
    return columns;
}

size_t cli_text_prefix(const char *s, int columns) {
    size_t at = 0, bytes;
    for (int used = 0; s[at]; at += bytes) {
        used += char_columns(s + at, &bytes);
        if (used > columns) break;
    }
    return at;
}
