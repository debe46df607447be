#ifndef AADS_CMALLOC_SHIM_H
#define AADS_CMALLOC_SHIM_H
#include <malloc.h>
#endif
