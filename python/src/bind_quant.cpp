// Quantizers: ResidualQuantizer (RQ-KMeans), model files, reconstruction error.
#include <string>
#include <utility>
#include <vector>

#include "bind_additive.h"
#include "bind_quant.h"
#include "tessera/cluster/balanced_assignment.h"
#include "tessera/io/npz.h"
#include "tessera/quant/quantizer.h"
#include "tessera/quant/serialization.h"

namespace tessera_py {

F32In check_dim(size_t d, py::handle x, const char* name) {
  F32In in = as_f32(x, name);
  if (in.view.cols != d)
    throw_invalid(std::string("dimension mismatch: ") + name + " has " + std::to_string(in.view.cols) +
                  " columns, the model has " + std::to_string(d));
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

std::unique_ptr<tessera::Quantizer> read_model(const std::string& path, std::string& meta) {
  py::gil_scoped_release release;
  return tessera::load_quantizer(path, &meta);
}

std::unique_ptr<PyRQ> adopt_rq(std::unique_ptr<tessera::Quantizer>& q, const std::string& meta) {
  auto* rq = dynamic_cast<tessera::ResidualQuantizer*>(q.get());
  if (!rq) return nullptr;
  q.release();
  auto out = std::make_unique<PyRQ>(std::shared_ptr<tessera::ResidualQuantizer>(rq));
  out->metadata = json_loads(meta.empty() ? "{}" : meta);
  return out;
}

std::unique_ptr<PyRQ> load_rq(const std::string& path) {
  std::string meta;
  auto q = read_model(path, meta);
  auto out = adopt_rq(q, meta);
  if (!out) throw_error(g_format, path + ": a '" + q->type_name() + "' model, not a residual quantizer");
  return out;
}

}  // namespace

void bind_quant(py::module_& m) {
  def_search_type_constants(m);
  py::class_<PyRQ> rq(m, "ResidualQuantizer",
                   "Residual quantization (RQ-KMeans): x ≈ C_0[i_0] + C_1[i_1] + ..., level m's codebook C_m\n"
                   "(K_m × d) learned by k-means — or size-constrained (balanced) k-means — on the residuals.\n"
                   "Methods may be called from several Python threads; heavy ones release the GIL.");
  rq.def(py::init([](size_t d, const py::object& sizes_or_M, const py::object& nbits, const py::object& search_type,
                       bool balance, int max_iter, double tol, int n_init,
                       const std::string& init, uint64_t seed, const py::object& size_min, const py::object& size_max,
                       size_t train_sample, bool sample_warm_start, int max_beam_size, const py::object& progress) {
             if (d == 0) throw_invalid("d must be at least 1");
             std::vector<size_t> codebook_sizes;
             if (py::isinstance<py::int_>(sizes_or_M)) {  // faiss's (d, M, nbits)
               if (nbits.is_none()) throw_invalid("ResidualQuantizer(d, M, nbits): nbits is missing");
               codebook_sizes = tessera::AdditiveQuantizer::equal_codebook_sizes(sizes_or_M.cast<size_t>(),
                                                                                  nbits.cast<size_t>());
             } else {
               if (!nbits.is_none()) throw_invalid("nbits goes with an int M, not with a list of codebook sizes");
               codebook_sizes = sizes_or_M.cast<std::vector<size_t>>();
             }
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
             p.max_beam_size = max_beam_size;
             auto r = std::make_unique<PyRQ>(
                 std::make_shared<tessera::ResidualQuantizer>(d, codebook_sizes, p, search_type_arg(search_type)));
             if (!progress.is_none() && !PyCallable_Check(progress.ptr()))
               throw py::type_error("progress must be a callable or None");
             r->progress = progress;
             return r;
           }),
           "d"_a, "codebook_sizes"_a, "nbits"_a = py::none(), py::kw_only(), "search_type"_a = 0, "balance"_a = false, "max_iter"_a = 100, "tol"_a = 1e-4,
           "n_init"_a = 3, "init"_a = "auto", "seed"_a = 42, "size_min"_a = py::none(), "size_max"_a = py::none(),
           "train_sample"_a = 0, "sample_warm_start"_a = true, "max_beam_size"_a = 5, "progress"_a = py::none(),
           "A residual quantizer for d-dimensional vectors with len(codebook_sizes) levels of K_m codes, or\n"
           "(d, M, nbits) as faiss: M levels of 2^nbits codes (nbits in 1..16). search_type: faiss's int or name\n"
           "(ST_decompress, ST_norm_float, ...): the norm packed codes carry; train() also learns its encoding.\n"
           "balance: train levels with size-constrained k-means (bounds size_min/size_max, default per level\n"
           "max(1, n//K - 1), n//K + 1). Level m trains with a seed derived from (seed, m). train_sample > 0:\n"
           "learn codebooks on that many sampled rows, then assign all rows. sample_warm_start: as in kmeans().\n"
           "max_beam_size: partial encodings kept per level by encode()/compute_codes() (faiss's default 5;\n"
           "1 = greedy). Training and semantic IDs always assign level by level.")
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
          "x"_a,
          "Residual encoding with a beam of max_beam_size partial codes per vector (1: greedy, the nearest\n"
          "codeword at every level): x: n × d → codes: n × M int32.")
      .def_property(
          "max_beam_size", [](PyRQ& r) { return r.q->params().max_beam_size; },
          [](PyRQ& r, int b) {
            if (b < 1) throw_invalid("max_beam_size must be at least 1, got " + std::to_string(b));
            write_locked(r, nullptr, [&] { r.q->params().max_beam_size = b; });
          },
          "Partial encodings kept per level when encoding (faiss's max_beam_size, default 5; 1 = greedy).")
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
                            "train_sample"_a = p.train_sample, "sample_warm_start"_a = p.sample_warm_start,
                            "max_beam_size"_a = p.max_beam_size);
          },
          "Training parameters (a dict copy).")
      .def("__repr__", [](PyRQ& r) {
        std::string s = "ResidualQuantizer(d=" + std::to_string(r.q->dim()) + ", codebook_sizes=[";
        for (size_t m = 0; m < r.q->num_codebooks(); ++m)
          s += (m ? ", " : "") + std::to_string(r.q->codebook_sizes()[m]);
        return s + "], balance=" + (r.q->params().balance ? "True" : "False") +
               ", trained=" + (r.q->is_trained() ? "True" : "False") + ")";
      });
  def_additive_base(rq);

  m.def(
      "load_quantizer",
      [](const py::object& path) -> py::object {
        const std::string p = path_str(path);
        std::string meta;
        auto q = read_model(p, meta);
        if (auto r = adopt_rq(q, meta)) return py::cast(std::move(r));
        if (auto l = adopt_lsq(q, meta)) return py::cast(std::move(l));
        throw_error(g_format, p + ": a '" + q->type_name() + "' model, which this module cannot wrap");
      },
      "path"_a, "Read a model file (.tsq); returns a ResidualQuantizer or a LocalSearchQuantizer.");

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
