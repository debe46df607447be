#ifndef AADS_CLIBJPEG_H
#define AADS_CLIBJPEG_H

// The libjpeg API (libjpeg-turbo's jpeglib.h) for the JPEGs TurboJPEG cannot classify. libjpeg reports
// errors by longjmp from its error manager, which Swift cannot do, so the calls that may fail run here,
// inside setjmp; everything else (limits, scale choice, colour handling, error codes) is in Swift.

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// What a call did. A warning is a recoverable problem in the data (libjpeg's "Corrupt JPEG data ...").
typedef enum {
    AADS_LIBJPEG_OK = 0,
    AADS_LIBJPEG_WARNING = 1,
    AADS_LIBJPEG_ERROR = 2,
} aads_libjpeg_status;

/// The frame header: dimensions, component count and libjpeg's J_COLOR_SPACE of the data.
typedef struct {
    int width;
    int height;
    int components;
    int color_space;
} aads_libjpeg_header;

/// libjpeg's J_COLOR_SPACE values the caller needs.
enum {
    AADS_LIBJPEG_CS_GRAYSCALE = 1,
    AADS_LIBJPEG_CS_RGB = 2,
    AADS_LIBJPEG_CS_YCBCR = 3,
    AADS_LIBJPEG_CS_CMYK = 4,
    AADS_LIBJPEG_CS_YCCK = 5,
};

/// Reads the header of `size` bytes at `data`. A datastream without an image is an error. On error or
/// warning the first message is written to `message` (`message_size` bytes, NUL-terminated).
aads_libjpeg_status aads_libjpeg_read_header(
    const unsigned char *data, unsigned long size, aads_libjpeg_header *header, char *message, size_t message_size);

/// Decodes at the DCT scale `scale_num`/`scale_denom` into `destination`: `width` × `height` pixels of
/// `channels` bytes (1 = grayscale, 3 = RGB, 4 = CMYK), packed rows. `width` and `height` must be what libjpeg
/// makes of the header at that scale, otherwise the call fails without writing.
///
/// With `stop_on_warning` the first warning ends the decode (status WARNING); otherwise the whole picture is
/// decoded and the first warning, if any, is returned. A progressive image with more than `max_scans` scans is
/// an error.
aads_libjpeg_status aads_libjpeg_decompress(
    const unsigned char *data, unsigned long size, int scale_num, int scale_denom, int channels,
    unsigned char *destination, int width, int height, int stop_on_warning, int max_scans, char *message,
    size_t message_size);

#ifdef __cplusplus
}
#endif

#endif
