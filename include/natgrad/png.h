/* natgrad/png.h: a small PNG writer for pictures of data and model samples (host only).
 *
 * Files are 8-bit grayscale (colour type 0) or 8-bit RGB (colour type 2), not interlaced, every
 * row stored with filter type 0 (None) and the image data deflated by zlib into IDAT chunks of at
 * most 64 KiB. They are written atomically through ng_wfile (natgrad/file.h): PATH.tmp, fsync,
 * rename, so PATH is either the old file or the complete new one.
 *
 * Width and height are 1 .. NG_PNG_MAX_SIDE. Errors: NG_ERR_INVALID_ARG (NULL, zero, negative or
 * absurd sizes, non-finite values for the grid), NG_ERR_IO (the file could not be written; the
 * message names the path), NG_ERR_OOM. */
#ifndef NATGRAD_PNG_H
#define NATGRAD_PNG_H

#include "natgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest accepted width or height, in pixels. */
#define NG_PNG_MAX_SIDE 32768
/* Gray level of the border and of empty cells in ng_png_write_image_grid. */
#define NG_PNG_GRID_GRAY 128

/* Write a width x height 8-bit grayscale image; pixels row-major, one byte per pixel. */
ng_status ng_png_write_gray(const char *path, int width, int height, const unsigned char *pixels);
/* Write a width x height 8-bit RGB image; pixels row-major, 3 bytes (R, G, B) per pixel. */
ng_status ng_png_write_rgb(const char *path, int width, int height, const unsigned char *pixels);

/* Tile n images into one grayscale picture. x is a (img_h * img_w, n) column-major float matrix
 * (the layout of ng_dataset): column j is image j, pixel (r, c) at r * img_w + c, values in
 * [0, 1] (values outside are clamped; NaN or Inf is refused). Image j goes to grid row j / cols,
 * column j % cols; cells are separated and surrounded by pad pixels of gray NG_PNG_GRID_GRAY, and
 * cells of the last row left without an image are that gray too. cols larger than n is reduced
 * to n. A pixel value v becomes the byte floor(255 v + 0.5). The picture is
 * (cols * img_w + (cols + 1) * pad) x (rows * img_h + (rows + 1) * pad) pixels,
 * rows = ceil(n / cols). img_h, img_w, n, cols >= 1; pad >= 0. */
ng_status ng_png_write_image_grid(const char *path, const float *x, int img_h, int img_w, int n,
                                  int cols, int pad);

#ifdef __cplusplus
}
#endif
#endif
