#include "CLibJPEG.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>

// libjpeg's error manager, extended with the jump target and what was seen. Nothing is printed.
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int stop_on_warning;
    int warned;
    int stopped;
    int has_message;
    char *message;
    size_t message_size;
} error_manager;

static void keep_message(j_common_ptr cinfo, int replace) {
    error_manager *err = (error_manager *)cinfo->err;
    if (err->message == NULL || err->message_size == 0 || (err->has_message && !replace)) return;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    snprintf(err->message, err->message_size, "%s", text);
    err->has_message = 1;
}

static void on_error(j_common_ptr cinfo) {
    keep_message(cinfo, 1);
    longjmp(((error_manager *)cinfo->err)->jump, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;  // trace messages
    error_manager *err = (error_manager *)cinfo->err;
    keep_message(cinfo, 0);
    err->warned = 1;
    err->pub.num_warnings++;
    if (err->stop_on_warning) {
        err->stopped = 1;
        longjmp(err->jump, 1);
    }
}

static void no_output(j_common_ptr cinfo) { (void)cinfo; }

static void install(
    struct jpeg_decompress_struct *cinfo, error_manager *err, int stop_on_warning, char *message,
    size_t message_size) {
    memset(cinfo, 0, sizeof(*cinfo));
    memset(err, 0, sizeof(*err));
    cinfo->err = jpeg_std_error(&err->pub);
    err->pub.error_exit = on_error;
    err->pub.emit_message = on_message;
    err->pub.output_message = no_output;
    err->stop_on_warning = stop_on_warning;
    err->message = message;
    err->message_size = message_size;
    if (message != NULL && message_size > 0) message[0] = '\0';
}

// Progressive files with an absurd number of scans cost unbounded CPU (as TurboJPEG's TJFLAG_LIMITSCANS).
typedef struct {
    struct jpeg_progress_mgr pub;
    int max_scans;
} scan_limit;

static void check_scans(j_common_ptr cinfo) {
    scan_limit *limit = (scan_limit *)cinfo->progress;
    if (!cinfo->is_decompressor || ((j_decompress_ptr)cinfo)->input_scan_number <= limit->max_scans) return;
    error_manager *err = (error_manager *)cinfo->err;
    if (err->message != NULL && err->message_size > 0) {
        snprintf(err->message, err->message_size, "Progressive JPEG image has more than %d scans", limit->max_scans);
        err->has_message = 1;
    }
    longjmp(err->jump, 1);
}

aads_libjpeg_status aads_libjpeg_read_header(
    const unsigned char *data, unsigned long size, aads_libjpeg_header *header, char *message, size_t message_size) {
    struct jpeg_decompress_struct cinfo;
    error_manager err;
    install(&cinfo, &err, 0, message, message_size);
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return AADS_LIBJPEG_ERROR;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, size);
    jpeg_read_header(&cinfo, TRUE);
    header->width = (int)cinfo.image_width;
    header->height = (int)cinfo.image_height;
    header->components = cinfo.num_components;
    header->color_space = (int)cinfo.jpeg_color_space;
    jpeg_destroy_decompress(&cinfo);
    return err.warned ? AADS_LIBJPEG_WARNING : AADS_LIBJPEG_OK;
}

aads_libjpeg_status aads_libjpeg_decompress(
    const unsigned char *data, unsigned long size, int scale_num, int scale_denom, int channels,
    unsigned char *destination, int width, int height, int stop_on_warning, int max_scans, char *message,
    size_t message_size) {
    struct jpeg_decompress_struct cinfo;
    error_manager err;
    scan_limit limit;
    install(&cinfo, &err, stop_on_warning, message, message_size);
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return err.stopped ? AADS_LIBJPEG_WARNING : AADS_LIBJPEG_ERROR;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, size);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.progressive_mode && max_scans > 0) {
        memset(&limit, 0, sizeof(limit));
        limit.pub.progress_monitor = check_scans;
        limit.max_scans = max_scans;
        cinfo.progress = &limit.pub;
    }
    cinfo.scale_num = (unsigned int)scale_num;
    cinfo.scale_denom = (unsigned int)scale_denom;
    cinfo.out_color_space = channels == 1 ? JCS_GRAYSCALE : (channels == 4 ? JCS_CMYK : JCS_RGB);
    jpeg_calc_output_dimensions(&cinfo);
    if ((int)cinfo.output_width != width || (int)cinfo.output_height != height
        || cinfo.output_components != channels) {
        if (message != NULL && message_size > 0) {
            snprintf(
                message, message_size, "libjpeg decodes at %ux%ux%d, not the expected %dx%dx%d",
                cinfo.output_width, cinfo.output_height, cinfo.output_components, width, height, channels);
        }
        jpeg_destroy_decompress(&cinfo);
        return AADS_LIBJPEG_ERROR;
    }
    jpeg_start_decompress(&cinfo);
    size_t stride = (size_t)width * (size_t)channels;
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = destination + (size_t)cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return err.warned ? AADS_LIBJPEG_WARNING : AADS_LIBJPEG_OK;
}
