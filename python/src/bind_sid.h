// The Python-side SemanticIds (bind_sid.cpp registers the class tessera.SemanticIds), shared with the
// neural bindings (python/src/neural/), whose semantic_ids() returns the same class: a named type, so that
// pybind11 finds its registration from the other extension module.
#pragma once
#include "common.h"
#include "tessera/sid/pipeline.h"

namespace tessera_py {

struct PySids {
  tessera::SemanticIds s;
  py::object model;  // the PyRQ (bind_quant.h) wrapping s.model
};

}  // namespace tessera_py
