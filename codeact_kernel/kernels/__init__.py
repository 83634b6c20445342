"""Kernels: executing code in one kernel (``session``), and where kernels come from.

Backends: a local sandboxed kernel (``provisioner``), an existing kernel by connection file
(``connection``), a Jupyter gateway (``gateway``, over ``gateway_client``) and the warm
``pool``. ``outputs`` turns iopub messages into notebook outputs; ``stdin`` answers the
kernel's stdin channel (``input()`` and tools over it).
"""
