/*
 * Independent C reference for the depin mandelbrot kernel, used to check the
 * numba kernel bit-for-bit and as a C benchmark baseline.
 *
 * Build (exactly these flags; cref.py uses the same):
 *   gcc -O2 -std=c99 -ffp-contract=off -fno-fast-math -o mandelbrot_ref mandelbrot_ref.c
 * -ffp-contract=off forbids fusing a*b+c into an FMA, which would change the
 * rounding and break bit-identity with the reference spec.
 *
 * Usage:
 *   mandelbrot_ref WIDTH HEIGHT X_MIN X_MAX Y_MIN Y_MAX MAX_ITER ROW_START ROW_END OUTFILE
 *
 * X_MIN..Y_MAX are float64 values given as their IEEE-754 bit pattern: exactly
 * 16 hex digits, most significant first (the uint64 bits printed with %016llx;
 * in Python: struct.pack('>d', v).hex()), e.g. 1.0 -> 3ff0000000000000,
 * -2.0 -> c000000000000000. This avoids any decimal round-trip error.
 *
 * Rows [ROW_START, ROW_END) of the full WIDTH x HEIGHT image are computed
 * (row 0 = top, y_max side) and written to OUTFILE as
 * (ROW_END-ROW_START)*WIDTH little-endian uint32 values, row-major.
 * Exit status: 0 ok, 2 usage/argument error, 1 I/O error.
 */
#include <errno.h>
#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* x87 excess precision (e.g. i386 without SSE2) would silently change results. */
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "requires FLT_EVAL_METHOD == 0 (plain float64 arithmetic, e.g. SSE2 or aarch64)"
#endif

static void die_usage(const char *msg)
{
    fprintf(stderr, "mandelbrot_ref: %s\n"
            "usage: mandelbrot_ref WIDTH HEIGHT X_MIN X_MAX Y_MIN Y_MAX MAX_ITER "
            "ROW_START ROW_END OUTFILE\n"
            "  floats as 16 hex digits of their IEEE-754 bits, e.g. 1.0 = 3ff0000000000000\n",
            msg);
    exit(2);
}

static double parse_hex_double(const char *s, const char *name)
{
    uint64_t bits = 0;
    double d;
    int i;
    /* strtoull would accept signs, "0x" and short strings; insist on the exact format. */
    if (strlen(s) != 16) {
        fprintf(stderr, "mandelbrot_ref: %s must be exactly 16 hex digits\n", name);
        exit(2);
    }
    for (i = 0; i < 16; i++) {
        char ch = s[i];
        unsigned v;
        if (ch >= '0' && ch <= '9') v = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') v = (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') v = (unsigned)(ch - 'A' + 10);
        else {
            fprintf(stderr, "mandelbrot_ref: %s must be exactly 16 hex digits\n", name);
            exit(2);
        }
        bits = (bits << 4) | v;
    }
    memcpy(&d, &bits, sizeof d);
    return d;
}

static long long parse_int(const char *s, const char *name, long long lo, long long hi)
{
    char *end;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "mandelbrot_ref: bad %s: '%s' (allowed %lld..%lld)\n", name, s, lo, hi);
        exit(2);
    }
    return v;
}

static uint32_t escape_count(double x, double y, uint32_t max_iter)
{
    double zr = 0.0, zi = 0.0;
    uint32_t n = 0;
    while (n < max_iter && zr * zr + zi * zi <= 4.0) {
        double zr_new = zr * zr - zi * zi + x;
        zi = 2.0 * zr * zi + y;
        zr = zr_new;
        n++;
    }
    return n;
}

int main(int argc, char **argv)
{
    long long width, height, row_start, row_end, r, c;
    uint32_t max_iter;
    double x_min, x_max, y_min, y_max, dx, dy;
    unsigned char *buf;
    FILE *f;

    if (argc != 11)
        die_usage("expected 10 arguments");

    width = parse_int(argv[1], "WIDTH", 1, INT32_MAX);
    height = parse_int(argv[2], "HEIGHT", 1, INT32_MAX);
    x_min = parse_hex_double(argv[3], "X_MIN");
    x_max = parse_hex_double(argv[4], "X_MAX");
    y_min = parse_hex_double(argv[5], "Y_MIN");
    y_max = parse_hex_double(argv[6], "Y_MAX");
    max_iter = (uint32_t)parse_int(argv[7], "MAX_ITER", 0, UINT32_MAX);
    row_start = parse_int(argv[8], "ROW_START", 0, height);
    row_end = parse_int(argv[9], "ROW_END", row_start, height);

    f = fopen(argv[10], "wb");
    if (!f) {
        perror("mandelbrot_ref: open OUTFILE");
        return 1;
    }
    buf = malloc((size_t)width * 4);
    if (!buf) {
        fprintf(stderr, "mandelbrot_ref: out of memory\n");
        return 1;
    }

    /* Spans are computed once; the spec's per-pixel formula is
     * x_min + ((c + 0.5) * (x_max - x_min)) / width, so the division stays
     * per pixel (precomputing a step would round differently). */
    dx = x_max - x_min;
    dy = y_max - y_min;
    for (r = row_start; r < row_end; r++) {
        double y = y_max - (((double)r + 0.5) * dy) / (double)height;
        for (c = 0; c < width; c++) {
            double x = x_min + (((double)c + 0.5) * dx) / (double)width;
            uint32_t n = escape_count(x, y, max_iter);
            /* Byte-wise so the file is little-endian on any host. */
            buf[4 * c + 0] = (unsigned char)(n & 0xff);
            buf[4 * c + 1] = (unsigned char)((n >> 8) & 0xff);
            buf[4 * c + 2] = (unsigned char)((n >> 16) & 0xff);
            buf[4 * c + 3] = (unsigned char)((n >> 24) & 0xff);
        }
        if (fwrite(buf, 4, (size_t)width, f) != (size_t)width) {
            perror("mandelbrot_ref: write OUTFILE");
            return 1;
        }
    }
    free(buf);
    if (fclose(f) != 0) {
        perror("mandelbrot_ref: close OUTFILE");
        return 1;
    }
    return 0;
}
