#include <pybind11/pybind11.h>
PYBIND11_MODULE(_tessera, m) { m.attr("__version__") = "0.1.0"; }
