"""int8 post-training quantization: calibration ranges, the QDQ quantizer's driver and its report.

The rewrite itself is the `quantize-static` pass (compiler/passes/quantize_static.py); this
package measures what it needs (`ranges.py`, over samples run by `probe.py`) and checks what it
did (`report.py`). `driver.py` ties them together for compile(precision="int8").
"""
