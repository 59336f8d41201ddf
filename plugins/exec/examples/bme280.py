#!/usr/bin/env python3
"""BME280 temperature / humidity / pressure for bitnetd's exec plugin.

Prints one JSON reading per line on stdout, every --interval seconds:

    {"topic": "bme280", "fields": {"temperature_c": 21.53, "humidity_percent": 45.2, "pressure_hpa": 1013.42, "simulated": false}}

Reads the sensor over I2C with smbus2 (`pip install smbus2`, I2C enabled with raspi-config) when
the library and the bus are there; otherwise (or with --simulate) it prints plausible simulated
values, so the pipeline can be tried on any machine. Problems go to stderr, which bitnetd logs with
the plugin name. Exits on SIGTERM (bitnetd's stop) with the default action.
"""
import argparse
import json
import math
import random
import sys
import time


def read_calibration(bus, addr):
    """Trimming parameters, datasheet section 4.2.2."""
    c = bus.read_i2c_block_data(addr, 0x88, 26)
    h = bus.read_i2c_block_data(addr, 0xE1, 7)

    def u16(lo, hi):
        return lo | (hi << 8)

    def s16(lo, hi):
        v = u16(lo, hi)
        return v - 65536 if v > 32767 else v

    def s8(v):
        return v - 256 if v > 127 else v

    cal = {
        "T1": u16(c[0], c[1]), "T2": s16(c[2], c[3]), "T3": s16(c[4], c[5]),
        "P1": u16(c[6], c[7]), "P2": s16(c[8], c[9]), "P3": s16(c[10], c[11]),
        "P4": s16(c[12], c[13]), "P5": s16(c[14], c[15]), "P6": s16(c[16], c[17]),
        "P7": s16(c[18], c[19]), "P8": s16(c[20], c[21]), "P9": s16(c[22], c[23]),
        "H1": c[25], "H2": s16(h[0], h[1]), "H3": h[2],
        "H4": (s8(h[3]) << 4) | (h[4] & 0x0F), "H5": (s8(h[5]) << 4) | (h[4] >> 4), "H6": s8(h[6]),
    }
    return cal


def read_sensor(bus, addr, cal):
    """One forced-mode measurement, compensated with the datasheet's floating-point formulas (8.1)."""
    bus.write_byte_data(addr, 0xF2, 0x01)  # humidity oversampling x1
    bus.write_byte_data(addr, 0xF4, 0x25)  # temperature x1, pressure x1, forced mode
    time.sleep(0.01)
    d = bus.read_i2c_block_data(addr, 0xF7, 8)
    adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
    adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
    adc_h = (d[6] << 8) | d[7]

    v1 = (adc_t / 16384.0 - cal["T1"] / 1024.0) * cal["T2"]
    v2 = ((adc_t / 131072.0 - cal["T1"] / 8192.0) ** 2) * cal["T3"]
    t_fine = v1 + v2
    temperature = t_fine / 5120.0

    v1 = t_fine / 2.0 - 64000.0
    v2 = v1 * v1 * cal["P6"] / 32768.0 + v1 * cal["P5"] * 2.0
    v2 = v2 / 4.0 + cal["P4"] * 65536.0
    v1 = (cal["P3"] * v1 * v1 / 524288.0 + cal["P2"] * v1) / 524288.0
    v1 = (1.0 + v1 / 32768.0) * cal["P1"]
    pressure = 0.0
    if v1 != 0:
        p = 1048576.0 - adc_p
        p = (p - v2 / 4096.0) * 6250.0 / v1
        v1 = cal["P9"] * p * p / 2147483648.0
        v2 = p * cal["P8"] / 32768.0
        pressure = p + (v1 + v2 + cal["P7"]) / 16.0

    h = t_fine - 76800.0
    h = (adc_h - (cal["H4"] * 64.0 + cal["H5"] / 16384.0 * h)) * (
        cal["H2"] / 65536.0 * (1.0 + cal["H6"] / 67108864.0 * h * (1.0 + cal["H3"] / 67108864.0 * h)))
    h = h * (1.0 - cal["H1"] * h / 524288.0)
    humidity = min(100.0, max(0.0, h))
    return temperature, humidity, pressure / 100.0


def simulated(t):
    """A slow daily-looking drift with a little noise."""
    temperature = 21.0 + 2.5 * math.sin(t / 600.0) + random.gauss(0, 0.05)
    humidity = 45.0 + 8.0 * math.sin(t / 900.0 + 1.0) + random.gauss(0, 0.2)
    pressure = 1013.0 + 1.5 * math.sin(t / 3600.0) + random.gauss(0, 0.05)
    return temperature, humidity, pressure


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between readings (default 10)")
    ap.add_argument("--bus", type=int, default=1, help="I2C bus number (default 1: /dev/i2c-1)")
    ap.add_argument("--address", type=lambda s: int(s, 0), default=0x76, help="I2C address (0x76 or 0x77)")
    ap.add_argument("--topic", default="bme280", help="topic suffix of the readings")
    ap.add_argument("--simulate", action="store_true", help="never touch I2C")
    ap.add_argument("--count", type=int, default=0, help="stop after this many readings (0 = run forever)")
    args = ap.parse_args()

    bus = cal = None
    if not args.simulate:
        try:
            from smbus2 import SMBus
            bus = SMBus(args.bus)
            chip = bus.read_byte_data(args.address, 0xD0)
            if chip != 0x60:
                raise OSError("chip id 0x%02x at 0x%02x is not a BME280 (0x60)" % (chip, args.address))
            cal = read_calibration(bus, args.address)
        except Exception as e:  # no library, no bus, no sensor: simulate, and say so once
            print("bme280: %s; simulating readings" % e, file=sys.stderr, flush=True)
            bus = None

    n = 0
    while True:
        try:
            if bus is not None:
                t, h, p = read_sensor(bus, args.address, cal)
            else:
                t, h, p = simulated(time.time())
            fields = {"temperature_c": round(t, 2), "humidity_percent": round(h, 1),
                      "pressure_hpa": round(p, 2), "simulated": bus is None}
            print(json.dumps({"topic": args.topic, "fields": fields}), flush=True)
        except OSError as e:  # a loose wire: report, keep going
            print("bme280: read failed: %s" % e, file=sys.stderr, flush=True)
        n += 1
        if args.count and n >= args.count:
            return
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
