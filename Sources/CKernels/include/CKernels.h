#ifndef AADS_CKERNELS_H
#define AADS_CKERNELS_H
#include <stdint.h>
#endif
