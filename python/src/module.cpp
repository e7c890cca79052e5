// The pybind11 extension tessera._tessera: numpy in, numpy out, the GIL released around all heavy work.
// Conventions (arrays, errors, progress) are described in common.h; each library area has its binding
// file: bind_core (exceptions, threads), bind_io, bind_cluster, bind_quant (with bind_additive.h), bind_lsq,
// bind_index, bind_rabitq, bind_rabitq_codec, bind_sid, bind_distributed.
#include "common.h"

PYBIND11_MODULE(_tessera, m) {
  m.doc() = "tessera: vector quantization and semantic IDs (C++ core, numpy in and out).";
  m.attr("__version__") = TESSERA_VERSION;

  tessera_py::bind_core(m);
  tessera_py::bind_io(m);
  tessera_py::bind_cluster(m);
  tessera_py::bind_quant(m);
  tessera_py::bind_lsq(m);
  tessera_py::bind_index(m);
  tessera_py::bind_rabitq(m);
  tessera_py::bind_rabitq_codec(m);
  tessera_py::bind_sid(m);
  tessera_py::bind_distributed(m);
}
