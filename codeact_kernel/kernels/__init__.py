"""Kernels: executing code in one kernel (``session``), and where kernels come from.

A session executes in the kernel of the manager passed in (``manager``: the interface).
Backends, one manager class each: a local sandboxed kernel (``local``, launched through
``provisioner``), an existing kernel by connection file (``connection``), a Jupyter gateway
(``gateway``, over ``gateway_client``) and the warm ``pool``; ``factory`` picks one from
configuration. ``outputs`` turns iopub messages into notebook outputs; ``stdin`` answers the
kernel's stdin channel (``input()`` and tools over it).
"""
