#ifndef AADS_CGPIOD_SHIM_H
#define AADS_CGPIOD_SHIM_H
#include <gpiod.h>
#endif
