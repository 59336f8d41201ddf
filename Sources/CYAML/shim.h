#ifndef BITNETD_CYAML_SHIM_H
#define BITNETD_CYAML_SHIM_H
#include <yaml.h>
#endif
