#ifndef BITNETD_CMOSQUITTO_SHIM_H
#define BITNETD_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
#include <mqtt_protocol.h>
#endif
