#ifndef AADS_CTURBOJPEG_SHIM_H
#define AADS_CTURBOJPEG_SHIM_H
#include <turbojpeg.h>
#endif
