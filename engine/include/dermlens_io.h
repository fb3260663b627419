/* DermLens engine: safe file and text handling for front ends (CLI, plug-in).
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * Same conventions as dermlens.h: 0 / -1 (or NULL) with a dl_error; the engine
 * never prints, never exits and never installs signal handlers (the caller
 * does, and calls dl_temp_files_remove() from its handler).
 */
#ifndef DERMLENS_IO_H
#define DERMLENS_IO_H

#include "dermlens.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Smallest image side every command classifies or explains (the plug-in's
 * DLP_MIN_REGION is the same number). */
#define DL_MIN_REGION_SIDE 8
/* --threads accepts 1..DL_MAX_THREADS. */
#define DL_MAX_THREADS 256
/* Decoding a tiny file into a huge picture: above DL_DECODE_FREE_PIXELS, an
 * image must bring at least one byte of file per DL_DECODE_MAX_PIXELS_PER_BYTE
 * declared pixels, else it is refused (DL_ERR_LIMIT) before the pixel buffer
 * is allocated. A real photograph is 2-30 pixels per byte; deflate cannot do
 * better than about 1030 bytes per byte, so only bilevel or flat synthetic
 * images (and arithmetic-coded JPEGs that end early, which libjpeg pads) are
 * denser. */
#define DL_DECODE_FREE_PIXELS ((int64_t)16 << 20)
#define DL_DECODE_MAX_PIXELS_PER_BYTE 1024

/* ------------------------------------------------------------ outputs */

/* May path be written by the safe writer? 0 if it does not exist or is a
 * regular file; -1 (DL_ERR_IO, message naming the path and what it is) if it
 * is a symbolic link, FIFO, device, socket or folder: those are never
 * replaced. Also checked by every atomic write right before the rename. */
int dl_output_check(const char *path, dl_error *err);

/* Write data to path atomically: a new temp file in path's folder created
 * with O_CREAT|O_EXCL|O_NOFOLLOW (random name "path.tmpXXXXXX"), fsync,
 * rename over path, fsync of the folder. Refuses targets dl_output_check
 * refuses. The temp file is registered for dl_temp_files_remove(). */
int dl_write_file_atomic(const char *path, const void *data, size_t size, dl_error *err);

/* Remove every temp file of an atomic write in progress. Async-signal-safe
 * (only unlink(2) on paths stored before): call it from a SIGINT/SIGTERM
 * handler, then re-raise the signal. */
void dl_temp_files_remove(void);

/* Advisory lock on "path.lock" (flock, exclusive, non-blocking), so that a
 * second process writing the same output is refused (DL_ERR_IO, "... is being
 * written by another process") instead of both claiming success. Returns a
 * handle >= 0, or -1. dl_output_unlock removes the lock file and releases. */
int dl_output_lock(const char *path, dl_error *err);
void dl_output_unlock(const char *path, int handle);

/* ------------------------------------------------------------ inputs */

/* Read a whole regular file (opened non-blocking: a FIFO or device is
 * refused, never waited on) of at most max_bytes. *data malloc'd (*size
 * bytes), caller frees. */
int dl_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *size, dl_error *err);

/* dl_image_load, then for JPEG the EXIF orientation (APP1, tag 0x0112) is
 * applied as image viewers and GIMP do. *orientation (may be NULL) gets the
 * EXIF value 1..8 that was applied (1: none or no EXIF). */
int dl_image_load_oriented(const char *path, dl_image *out, int *orientation, dl_error *err);
/* The EXIF orientation (1..8) of JPEG data; 1 when absent or invalid.
 * Bounds-checked: data is untrusted. */
int dl_jpeg_exif_orientation(const void *data, size_t size);
/* Replace *img by its copy turned to EXIF orientation o (2..8; 1 is a no-op).
 * 5..8 swap width and height. */
int dl_image_apply_orientation(dl_image *img, int orientation, dl_error *err);
/* "rotated 90 degrees clockwise" and so on, for reports. Static string. */
const char *dl_orientation_description(int orientation);

/* ------------------------------------------------------------ text */

/* A copy of s that is valid UTF-8 with no control characters: invalid bytes,
 * C0 controls, DEL and C1 controls are written as \xNN (bytes of the
 * original). malloc'd; NULL only when out of memory. For file names and
 * messages printed on a terminal or written to CSV / JSON. */
char *dl_text_sanitize(const char *s);
/* One CSV cell: dl_text_sanitize, then the OWASP CSV-injection rule (a cell
 * beginning with = + - @ tab or CR gets a leading single quote and is quoted),
 * then RFC 4180 quoting where needed. malloc'd; NULL only when out of memory. */
char *dl_csv_cell(const char *s);

#ifdef __cplusplus
}
#endif
#endif
