/*
 * Timing driver for the C reference (benchmarks only; not used by tests).
 *
 * It #includes tests/reference/mandelbrot_ref.c, so escape_count() is the reference's own function, compiled
 * with the reference's flags; only the reference's main() is renamed away. The pixel loop below repeats the
 * reference main()'s coordinate formulas exactly. The clock wraps only the compute loop: no process start,
 * argument parsing or file output is timed.
 *
 * Usage: mandelbrot_timed WIDTH HEIGHT X_MIN X_MAX Y_MIN Y_MAX MAX_ITER REPEATS OUTFILE
 *   floats as 16 hex digits of their IEEE-754 bits (as for mandelbrot_ref).
 * Prints one line per repeat: the compute time in nanoseconds. Writes the image of the last repeat to OUTFILE
 * (uint32, host byte order) so the caller can check it against the other implementations.
 */
#define _POSIX_C_SOURCE 199309L
#define main mandelbrot_ref_main
#include "../tests/reference/mandelbrot_ref.c"
#undef main

#include <time.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long long width, height, repeats, r, c, k;
    uint32_t max_iter, *out;
    double x_min, x_max, y_min, y_max, dx, dy;
    FILE *f;

    if (argc != 10) {
        fprintf(stderr, "usage: mandelbrot_timed W H X_MIN X_MAX Y_MIN Y_MAX MAX_ITER REPEATS OUTFILE\n");
        return 2;
    }
    width = parse_int(argv[1], "WIDTH", 1, 1 << 16);
    height = parse_int(argv[2], "HEIGHT", 1, 1 << 16);
    x_min = parse_hex_double(argv[3], "X_MIN");
    x_max = parse_hex_double(argv[4], "X_MAX");
    y_min = parse_hex_double(argv[5], "Y_MIN");
    y_max = parse_hex_double(argv[6], "Y_MAX");
    max_iter = (uint32_t)parse_int(argv[7], "MAX_ITER", 0, UINT32_MAX);
    repeats = parse_int(argv[8], "REPEATS", 1, 1000);
    out = malloc((size_t)width * (size_t)height * sizeof *out);
    if (!out) {
        fprintf(stderr, "mandelbrot_timed: out of memory\n");
        return 1;
    }
    dx = x_max - x_min;
    dy = y_max - y_min;
    for (k = 0; k < repeats; k++) {
        long long t0 = now_ns();
        for (r = 0; r < height; r++) {
            double y = y_max - (((double)r + 0.5) * dy) / (double)height;
            for (c = 0; c < width; c++) {
                double x = x_min + (((double)c + 0.5) * dx) / (double)width;
                out[r * width + c] = escape_count(x, y, max_iter);
            }
        }
        printf("%lld\n", now_ns() - t0);
    }
    f = fopen(argv[9], "wb");
    if (!f || fwrite(out, sizeof *out, (size_t)(width * height), f) != (size_t)(width * height) || fclose(f)) {
        perror("mandelbrot_timed: OUTFILE");
        return 1;
    }
    free(out);
    return 0;
}
