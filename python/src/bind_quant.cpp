// Quantizers: ResidualQuantizer (RQ-KMeans), model files, reconstruction error.
#include <string>
#include <utility>
#include <vector>

#include "bind_quant.h"
#include "tessera/cluster/balanced_assignment.h"
#include "tessera/io/npz.h"
#include "tessera/quant/quantizer.h"
#include "tessera/quant/serialization.h"

namespace tessera_py {

F32In check_dim(const PyRQ& r, py::handle x, const char* name) {
  F32In in = as_f32(x, name);
  if (in.view.cols != r.q->dim())
    throw_invalid(std::string("dimension mismatch: ") + name + " has " + std::to_string(in.view.cols) +
                  " columns, the model has " + std::to_string(r.q->dim()));
  return in;
}

namespace {

py::list reports_to_list(const std::vector<tessera::LevelReport>& reps) {
  py::list out;
  for (size_t m = 0; m < reps.size(); ++m) {
    const auto& r = reps[m];
    out.append(py::dict("level"_a = m, "codebook_size"_a = r.codebook_size, "mse_before"_a = r.mse_before,
                        "mse_after"_a = r.mse_after, "seconds"_a = r.seconds, "iterations"_a = r.iterations,
                        "warm_start_rows"_a = r.warm_start_rows, "size_min"_a = r.bounds.lo, "size_max"_a = r.bounds.hi));
  }
  return out;
}

/// Run f() — a call that returns per-level reports — under the model's write lock without the GIL, with the
/// model's Python progress callback wired in meanwhile; the reports become last_fit_report.
template <class F>
void train_reporting(PyRQ& r, F&& f) {
  Progress prog(r.progress);
  const std::vector<tessera::LevelReport> reps = write_locked(r, &prog, [&] {
    r.q->params().progress = prog.fn();
    struct Reset {
      tessera::ResidualQuantizer& q;
      ~Reset() { q.params().progress = nullptr; }
    } reset{*r.q};
    return f();
  });
  r.last_fit_report = reports_to_list(reps);
}

I32In check_codes(const PyRQ& r, py::handle codes) {
  I32In in = as_i32(codes, "codes", "n × M int32");
  if (in.view.cols != r.q->num_codebooks())
    throw_invalid("codes have " + std::to_string(in.view.cols) + " columns, the model has " +
                  std::to_string(r.q->num_codebooks()) + " codebooks");
  return in;
}

std::vector<tessera::FloatMatrix> codebooks_from_list(const PyRQ& r, py::handle books) {
  std::vector<tessera::FloatMatrix> out;
  for (py::handle b : py::iter(books)) {
    F32In in = as_f32(b, "codebook", "K_m × d float32");
    out.push_back(tessera::FloatMatrix::copy_of(in.view));
  }
  const auto& sizes = r.q->codebook_sizes();
  if (out.size() != sizes.size())
    throw_invalid("expected " + std::to_string(sizes.size()) + " codebooks, got " + std::to_string(out.size()));
  for (size_t m = 0; m < out.size(); ++m)
    if (out[m].rows() != sizes[m] || out[m].cols() != r.q->dim())
      throw_invalid("codebook " + std::to_string(m) + " is " + std::to_string(out[m].rows()) + " × " +
                    std::to_string(out[m].cols()) + ", expected " + std::to_string(sizes[m]) + " × " +
                    std::to_string(r.q->dim()));
  return out;
}

std::unique_ptr<PyRQ> load_rq(const std::string& path) {
  std::string meta;
  std::unique_ptr<tessera::Quantizer> q;
  {
    py::gil_scoped_release release;
    q = tessera::load_quantizer(path, &meta);
  }
  auto* rq = dynamic_cast<tessera::ResidualQuantizer*>(q.get());
  if (!rq) throw_error(g_format, path + ": not a residual-quantizer model");
  q.release();
  auto out = std::make_unique<PyRQ>(std::shared_ptr<tessera::ResidualQuantizer>(rq));
  out->metadata = json_loads(meta.empty() ? "{}" : meta);
  return out;
}

}  // namespace

void bind_quant(py::module_& m) {
  py::class_<PyRQ>(m, "ResidualQuantizer",
                   "Residual quantization (RQ-KMeans): x ≈ C_0[i_0] + C_1[i_1] + ..., level m's codebook C_m\n"
                   "(K_m × d) learned by k-means — or size-constrained (balanced) k-means — on the residuals.\n"
                   "Methods may be called from several Python threads; heavy ones release the GIL.")
      .def(py::init([](size_t d, std::vector<size_t> codebook_sizes, bool balance, int max_iter, double tol, int n_init,
                       const std::string& init, uint64_t seed, const py::object& size_min, const py::object& size_max,
                       size_t train_sample, bool sample_warm_start, const py::object& progress) {
             if (d == 0) throw_invalid("d must be at least 1");
             if (codebook_sizes.empty()) throw_invalid("codebook_sizes must name at least one level");
             for (size_t k : codebook_sizes)
               if (k == 0) throw_invalid("every codebook size must be at least 1");
             tessera::ResidualQuantizerParams p;
             p.balance = balance;
             p.max_iter = max_iter;
             p.tol = tol;
             p.n_init = n_init;
             p.init = tessera::parse_kmeans_init(init);
             p.seed = seed;
             p.size_min = opt_size(size_min);
             p.size_max = opt_size(size_max);
             p.train_sample = train_sample;
             p.sample_warm_start = sample_warm_start;
             auto r = std::make_unique<PyRQ>(std::make_shared<tessera::ResidualQuantizer>(d, codebook_sizes, p));
             if (!progress.is_none() && !PyCallable_Check(progress.ptr()))
               throw py::type_error("progress must be a callable or None");
             r->progress = progress;
             return r;
           }),
           "d"_a, "codebook_sizes"_a, py::kw_only(), "balance"_a = false, "max_iter"_a = 100, "tol"_a = 1e-4,
           "n_init"_a = 3, "init"_a = "auto", "seed"_a = 42, "size_min"_a = py::none(), "size_max"_a = py::none(),
           "train_sample"_a = 0, "sample_warm_start"_a = true, "progress"_a = py::none(),
           "A residual quantizer for d-dimensional vectors with len(codebook_sizes) levels of K_m codes.\n"
           "balance: train levels with size-constrained k-means (bounds size_min/size_max, default per level\n"
           "max(1, n//K - 1), n//K + 1). Level m trains with a seed derived from (seed, m). train_sample > 0:\n"
           "learn codebooks on that many sampled rows, then assign all rows. sample_warm_start: as in kmeans().")
      .def(
          "fit",
          [](PyRQ& r, const py::object& x) {
            F32In in = check_dim(r, x, "x");
            const size_t n = in.view.rows, M = r.q->num_codebooks();
            py::array_t<int32_t> codes({py::ssize_t(n), py::ssize_t(M)});
            int32_t* out = codes.mutable_data();
            train_reporting(r, [&] { return r.q->fit(in.view, out); });
            return codes;
          },
          "x"_a,
          "Train on x: n × d float32 and return every row's codes: n × M int32. With balance, every level's\n"
          "code sizes lie within the level's bounds. Per-level figures go to last_fit_report.")
      .def(
          "train",
          [](PyRQ& r, const py::object& x) {
            F32In in = check_dim(r, x, "x");
            train_reporting(r, [&] { return r.q->fit(in.view, nullptr); });
          },
          "x"_a, "Train on x: n × d float32 (fit() without returning codes).")
      .def(
          "encode",
          [](PyRQ& r, const py::object& x) {
            r.require_trained("encode");
            F32In in = check_dim(r, x, "x");
            py::array_t<int32_t> codes({py::ssize_t(in.view.rows), py::ssize_t(r.q->num_codebooks())});
            int32_t* out = codes.mutable_data();
            read_locked(r, [&] {
              r.q->encode(in.view, out);
            });
            return codes;
          },
          "x"_a, "Greedy residual encoding (nearest codeword at every level): x: n × d → codes: n × M int32.")
      .def(
          "assign_balanced",
          [](PyRQ& r, const py::object& x, const py::object& size_min, const py::object& size_max) {
            r.require_trained("assign_balanced");
            F32In in = check_dim(r, x, "x");
            const size_t n = in.view.rows, M = r.q->num_codebooks();
            const auto lo = opt_size(size_min), hi = opt_size(size_max);
            std::vector<tessera::SizeBounds> bounds(M);
            for (size_t m = 0; m < M; ++m) {
              bounds[m] = tessera::default_size_bounds(n, r.q->codebook_sizes()[m]);
              if (lo) bounds[m].lo = *lo;
              if (hi) bounds[m].hi = *hi;
            }
            py::array_t<int32_t> codes({py::ssize_t(n), py::ssize_t(M)});
            int32_t* out = codes.mutable_data();
            train_reporting(r, [&] {
              std::vector<tessera::LevelReport> reps;
              r.q->assign_balanced(in.view, out, bounds, &reps);
              return reps;
            });
            return codes;
          },
          "x"_a, py::kw_only(), "size_min"_a = py::none(), "size_max"_a = py::none(),
          "Size-constrained encoding with the trained codebooks: at every level, the assignment of all n\n"
          "residuals minimising squared error with code sizes in [size_min, size_max] (default per level\n"
          "max(1, n//K - 1), n//K + 1). x: n × d → codes: n × M int32. Per-level MSEs go to last_fit_report.")
      .def(
          "decode",
          [](PyRQ& r, const py::object& codes) {
            r.require_trained("decode");
            I32In c = check_codes(r, codes);
            py::array_t<float> out({py::ssize_t(c.view.rows), py::ssize_t(r.q->dim())});
            float* o = out.mutable_data();
            read_locked(r, [&] {
              r.q->decode(c.view.data, c.view.rows, o);
            });
            return out;
          },
          "codes"_a, "Reconstructions Σ_m C_m[codes[:, m]]: codes: n × M int32 → n × d float32.")
      .def(
          "pack_codes",
          [](PyRQ& r, const py::object& codes) {
            I32In c = check_codes(r, codes);
            py::array_t<uint8_t> out({py::ssize_t(c.view.rows), py::ssize_t(r.q->code_size())});
            uint8_t* o = out.mutable_data();
            without_gil(nullptr, [&] { r.q->pack_codes(c.view.data, c.view.rows, o); });
            return out;
          },
          "codes"_a,
          "Bit-pack codes: n × M int32 → n × code_size uint8 (⌈log2 K_m⌉ bits per code, little-endian bit order).")
      .def(
          "unpack_codes",
          [](PyRQ& r, const py::object& packed) {
            py::array a = as_numeric_array(packed, "packed", "iu", 2, "n × code_size uint8");
            if (a.dtype().itemsize() != 1) throw py::type_error("packed codes must be uint8");
            a = numpy().attr("ascontiguousarray")(a, "dtype"_a = "uint8");
            if (size_t(a.shape(1)) != r.q->code_size())
              throw_invalid("packed codes have " + std::to_string(a.shape(1)) + " bytes per row, the model's code size is " +
                            std::to_string(r.q->code_size()));
            const size_t n = size_t(a.shape(0));
            py::array_t<int32_t> out({py::ssize_t(n), py::ssize_t(r.q->num_codebooks())});
            int32_t* o = out.mutable_data();
            const auto* src = static_cast<const uint8_t*>(a.data());
            without_gil(nullptr, [&] { r.q->unpack_codes(src, n, o); });
            return out;
          },
          "packed"_a, "Unpack bit-packed codes: n × code_size uint8 → n × M int32.")
      .def_property_readonly(
          "codebooks",
          [](PyRQ& r) {
            r.require_trained("codebooks");
            auto books = read_locked(r, [&] {
              std::vector<tessera::FloatMatrix> v;
              for (size_t m = 0; m < r.q->num_codebooks(); ++m) v.push_back(tessera::FloatMatrix::copy_of(r.q->codebook(m)));
              return v;
            });
            py::list out;
            for (auto& b : books) out.append(matrix_to_numpy(std::move(b)));
            return out;
          },
          "Copies of the codebooks: a list of M arrays, C_m: K_m × d float32.")
      .def(
          "codebook",
          [](PyRQ& r, size_t m) {
            r.require_trained("codebook");
            if (m >= r.q->num_codebooks())
              throw py::index_error("codebook " + std::to_string(m) + " of " + std::to_string(r.q->num_codebooks()));
            return matrix_to_numpy(read_locked(r, [&] { return tessera::FloatMatrix::copy_of(r.q->codebook(m)); }));
          },
          "m"_a, "A copy of codebook m: K_m × d float32.")
      .def(
          "set_codebooks",
          [](PyRQ& r, const py::object& books) {
            auto v = codebooks_from_list(r, books);
            write_locked(r, nullptr, [&] { r.q->set_codebooks(std::move(v)); });
          },
          "codebooks"_a, "Replace every codebook (a list of M arrays K_m × d); marks the model trained.")
      .def(
          "export_npz",
          [](PyRQ& r, const py::object& path) {
            r.require_trained("export_npz");
            const std::string p = path_str(path);
            read_locked(r, [&] {
              std::vector<std::pair<std::string, tessera::MatrixView<const float>>> books;
              for (size_t m = 0; m < r.q->num_codebooks(); ++m)
                books.emplace_back("codebook_" + std::to_string(m), r.q->codebook(m));
              tessera::write_npz(p, books, true);
            });
          },
          "path"_a, "Write the codebooks to a .npz with keys codebook_0 .. codebook_{M-1} (what MiniOneRec reads).")
      .def(
          "import_npz",
          [](PyRQ& r, const py::object& path) {
            const std::string p = path_str(path);
            auto members = without_gil(nullptr, [&] { return tessera::read_npz_f32(p); });
            const size_t M = r.q->num_codebooks();
            py::list books;
            for (size_t m = 0; m < M; ++m) {
              const std::string key = "codebook_" + std::to_string(m);
              bool found = false;
              for (auto& [name, mat] : members)
                if (name == key) {
                  books.append(matrix_to_numpy(mat));
                  found = true;
                }
              if (!found)
                throw_error(g_format, p + ": no member '" + key + "' (expected codebook_0 .. codebook_" +
                                          std::to_string(M - 1) + ")");
            }
            auto v = codebooks_from_list(r, books);
            write_locked(r, nullptr, [&] { r.q->set_codebooks(std::move(v)); });
          },
          "path"_a, "Load codebooks from a .npz with keys codebook_0 .. (shapes K_m × d); marks the model trained.")
      .def(
          "save",
          [](PyRQ& r, const py::object& path, const py::object& metadata) {
            r.require_trained("save");
            const std::string p = path_str(path);
            const std::string meta =
                metadata.is_none() ? "{}" : py::module_::import("json").attr("dumps")(metadata).cast<std::string>();
            read_locked(r, [&] { tessera::save_quantizer(*r.q, p, meta); });
          },
          "path"_a, "metadata"_a = py::none(),
          "Write the model to a checked binary file (.tsq) atomically; metadata: a JSON-serialisable dict.")
      .def_static(
          "load", [](const py::object& path) { return load_rq(path_str(path)); }, "path"_a,
          "Read a model file written by save() (or model.tsq from build_semantic_ids().save()).")
      .def_property_readonly(
          "metadata", [](PyRQ& r) { return r.metadata; }, "The metadata dict stored in the loaded file, or None.")
      .def_property_readonly(
          "last_fit_report", [](PyRQ& r) { return r.last_fit_report; },
          "Per-level figures of the last fit()/train()/assign_balanced(): a list of dicts with level,\n"
          "codebook_size, mse_before, mse_after, seconds, iterations, warm_start_rows, size_min, size_max (None before).")
      .def_property_readonly("dim", [](PyRQ& r) { return r.q->dim(); }, "Vector dimension d.")
      .def_property_readonly(
          "codebook_sizes", [](PyRQ& r) { return r.q->codebook_sizes(); }, "K_m for each level.")
      .def_property_readonly(
          "num_codebooks", [](PyRQ& r) { return r.q->num_codebooks(); }, "Number of levels M.")
      .def_property_readonly("code_size", [](PyRQ& r) { return r.q->code_size(); }, "Bytes per packed code.")
      .def_property_readonly("is_trained", [](PyRQ& r) { return r.q->is_trained(); }, "Whether codebooks are set.")
      .def_property(
          "progress", [](PyRQ& r) { return r.progress; },
          [](PyRQ& r, const py::object& fn) {
            if (!fn.is_none() && !PyCallable_Check(fn.ptr())) throw py::type_error("progress must be a callable or None");
            r.progress = fn;
          },
          "Progress callable(stage, done, total, value) used by fit/train/assign_balanced, or None.")
      .def_property_readonly(
          "params",
          [](PyRQ& r) {
            const auto& p = r.q->params();
            return py::dict("balance"_a = p.balance, "max_iter"_a = p.max_iter, "tol"_a = p.tol,
                            "n_init"_a = p.n_init,
                            "init"_a = tessera::kmeans_init_name(p.init),
                            "seed"_a = p.seed,
                            "size_min"_a = p.size_min ? py::cast(*p.size_min) : py::none(),
                            "size_max"_a = p.size_max ? py::cast(*p.size_max) : py::none(),
                            "train_sample"_a = p.train_sample, "sample_warm_start"_a = p.sample_warm_start);
          },
          "Training parameters (a dict copy).")
      .def("__repr__", [](PyRQ& r) {
        std::string s = "ResidualQuantizer(d=" + std::to_string(r.q->dim()) + ", codebook_sizes=[";
        for (size_t m = 0; m < r.q->num_codebooks(); ++m)
          s += (m ? ", " : "") + std::to_string(r.q->codebook_sizes()[m]);
        return s + "], balance=" + (r.q->params().balance ? "True" : "False") +
               ", trained=" + (r.q->is_trained() ? "True" : "False") + ")";
      });

  m.def(
      "load_quantizer", [](const py::object& path) { return load_rq(path_str(path)); }, "path"_a,
      "Read a model file (.tsq); returns a ResidualQuantizer.");

  m.def(
      "mean_squared_error",
      [](const py::object& x, const py::object& y) {
        F32In a = as_f32(x, "x"), b = as_f32(y, "y");
        return without_gil(nullptr, [&] {
          return tessera::mean_squared_error(a.view, b.view);
        });
      },
      "x"_a, "y"_a, "Mean squared error per component, Σ‖x_i − y_i‖² / (n·d); x, y: n × d.");
}

}  // namespace tessera_py
