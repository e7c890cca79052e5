// The pybind11 extension tessera._neural: RQ-VAE and RQ-KMeans+ (the neural component, on libtorch).
//
// A module of its own so that `import tessera` does not load libtorch (some 280 shared libraries, about
// 1.2 s): python/tessera/neural.py imports it on first use. It reaches the component through
// tessera/neural/model.h only (no torch header here, as tools/neural_commands.cpp), and shares the
// conventions of tessera._tessera (common.h: arrays, progress, the GIL), whose module it imports first:
//   - errors are tessera._tessera's exception types (tessera.InvalidArgument, FormatError, IOError, Error);
//   - semantic_ids() returns tessera.SemanticIds (bind_sid.h) holding a tessera.ResidualQuantizer
//     (bind_quant.h): pybind11 finds those classes' registrations across the two modules.
// This module links its own copy of the tessera library (both are static builds), so the process-wide
// settings of that copy are set here: the interrupt check (Ctrl-C, as bind_core.cpp does) and, at every
// call, tessera's thread count from tessera.num_threads().
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bind_quant.h"
#include "bind_sid.h"
#include "common.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"
#include "tessera/core/threading.h"
#include "tessera/io/npz.h"
#include "tessera/neural/config.h"
#include "tessera/neural/model.h"
#include "tessera/neural/semantic_ids.h"
#include "tessera/quant/quantizer.h"
#include "tessera/quant/residual_quantizer.h"
#include "tessera/sid/collisions.h"
#include "tessera/sid/pipeline.h"

namespace tessera_py {

namespace {

namespace nn = tessera::neural;

py::module_& tessera_module() {
  // Leaked: a static py::object would be released after the interpreter is gone.
  static py::module_* m = new py::module_(py::module_::import("tessera._tessera"));
  return *m;
}

// ---------------------------------------------------------------------------------------------------
// The model: a handle and a lock. Every call takes the lock (evaluation switches the torch module to eval
// mode and back, so even reading calls change it); a call from this model's own progress callback is refused.

struct PyRQVAE {
  nn::RQVAEModel m;
  std::mutex mu;
  std::atomic<std::thread::id> owner{};

  explicit PyRQVAE(nn::RQVAEModel model) : m(std::move(model)) {}
};

/// tessera's thread count in tessera._tessera (set_num_threads / the default), for this module's copy.
int tessera_threads() { return tessera_module().attr("num_threads")().cast<int>(); }

template <class F>
auto locked(PyRQVAE& r, Progress* progress, F&& f) -> decltype(f()) {
  if (r.owner.load() == std::this_thread::get_id())
    throw std::runtime_error("this RQVAE is being used by the call that invoked this progress callback; it cannot "
                             "be used until that call returns");
  const int threads = tessera_threads();
  return without_gil(progress, [&]() -> decltype(f()) {
    std::lock_guard lock(r.mu);
    r.owner = std::this_thread::get_id();
    struct Clear {
      PyRQVAE& r;
      ~Clear() { r.owner = std::thread::id{}; }
    } clear{r};
    tessera::ScopedThreads scoped(threads);
    return f();
  });
}

F32In model_input(const PyRQVAE& r, py::handle x, const char* name = "x") {
  F32In in = as_f32(x, name, "n × in_dim float32");
  const int64_t d = r.m.config().in_dim;
  if (int64_t(in.view.cols) != d)
    throw_invalid("dimension mismatch: " + std::string(name) + " has " + std::to_string(in.view.cols) +
                  " columns, the model's in_dim is " + std::to_string(d));
  return in;
}

size_t batch_arg(long long b) {
  if (b < 1) throw_invalid("batch_size must be at least 1, got " + std::to_string(b));
  return size_t(b);
}

std::vector<int64_t> int_list(const py::object& seq, const char* name) {
  if (py::isinstance<py::str>(seq)) throw py::type_error(std::string(name) + " must be a sequence of ints");
  std::vector<int64_t> out;
  for (py::handle item : py::iter(seq)) {
    const long long v = item.cast<long long>();
    if (v < 1) throw_invalid(std::string(name) + ": every entry must be at least 1, got " + std::to_string(v));
    out.push_back(int64_t(v));
  }
  return out;
}

/// The settings shared by RQVAE() and rqkmeans_plus().
void fill_common(nn::RQVAEConfig& c, const py::object& layers, const std::string& decoder,
                 const std::string& commitment, double dropout, bool batch_norm, double beta, double quant_weight,
                 const py::object& sk_epsilons, int sk_iters, uint64_t seed) {
  c.layers = int_list(layers, "layers");
  if (decoder != "mlp" && decoder != "residual")
    throw_invalid("decoder must be 'mlp' (x̂ = MLP(q), as MiniOneRec) or 'residual' (x̂ = q + MLP(q)), got '" +
                  decoder + "'");
  c.residual_decoder = decoder == "residual";
  if (commitment != "per-level" && commitment != "partial-sums")
    throw_invalid("commitment must be 'per-level' (MiniOneRec) or 'partial-sums' (Lee et al.), got '" + commitment +
                  "'");
  c.partial_sum_commitment = commitment == "partial-sums";
  c.dropout = dropout;
  c.batch_norm = batch_norm;
  c.beta = beta;
  c.quant_weight = quant_weight;
  c.sk_epsilons.clear();
  if (!sk_epsilons.is_none()) {
    if (py::isinstance<py::str>(sk_epsilons)) throw py::type_error("sk_epsilons must be a sequence of floats or None");
    for (py::handle item : py::iter(sk_epsilons)) c.sk_epsilons.push_back(item.cast<double>());
  }
  c.sk_iters = sk_iters;
  c.seed = seed;
}

py::dict config_dict(const nn::RQVAEConfig& c) {
  return py::dict("in_dim"_a = c.in_dim, "e_dim"_a = c.e_dim, "layers"_a = py::tuple(py::cast(c.layers)),
                  "codebook_sizes"_a = py::tuple(py::cast(c.codebook_sizes)), "dropout"_a = c.dropout,
                  "batch_norm"_a = c.batch_norm, "beta"_a = c.beta, "quant_weight"_a = c.quant_weight,
                  "residual_encoder"_a = c.residual_encoder, "residual_decoder"_a = c.residual_decoder,
                  "partial_sum_commitment"_a = c.partial_sum_commitment,
                  "sk_epsilons"_a = c.sk_epsilons.empty() ? py::object(py::none())
                                                          : py::object(py::tuple(py::cast(c.sk_epsilons))),
                  "sk_iters"_a = c.sk_iters, "seed"_a = c.seed);
}

std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s;
}

/// Errors torch raises itself (c10::Error: a file it cannot read) as the CLI reports them.
template <class F>
void reading_state_dict(const std::string& path, F&& f) {
  try {
    f();
  } catch (const tessera::Error&) {
    throw;
  } catch (const std::exception& e) {
    TESSERA_THROW_FORMAT(path << " cannot be read as a state_dict: " << e.what());
  }
}

/// A Python callable(report: dict) called after every epoch (with the GIL); an exception it raises stops
/// training and propagates (as Progress does for progress callbacks).
class EpochCallback {
 public:
  explicit EpochCallback(py::object fn) : fn_(std::move(fn)) {
    if (!fn_.is_none() && !PyCallable_Check(fn_.ptr()))
      throw py::type_error("on_epoch must be a callable(report: dict) or None");
  }
  nn::EpochFn fn();
  py::error_already_set* error() { return error_.get(); }

 private:
  py::object fn_;
  std::unique_ptr<py::error_already_set> error_;
};

py::dict report_dict(const nn::EpochReport& r) {
  py::dict d("epoch"_a = r.epoch, "loss"_a = r.loss, "reconstruction"_a = r.reconstruction,
             "quantization"_a = r.quantization, "seconds"_a = r.seconds);
  if (r.evaluated) {
    d["collision_rate"] = r.collision_rate;
    d["codes_used"] = r.codes_used;
  }
  return d;
}

nn::EpochFn EpochCallback::fn() {
  if (fn_.is_none()) return {};
  return [this](const nn::EpochReport& r) {
    py::gil_scoped_acquire gil;
    if (error_) throw CallbackAbort();
    try {
      fn_(report_dict(r));
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    } catch (py::error_already_set& ex) {
      error_ = std::make_unique<py::error_already_set>(std::move(ex));
      throw CallbackAbort();
    }
  };
}

nn::LrSchedule parse_schedule(const std::string& s) {
  if (s == "constant") return nn::LrSchedule::constant;
  if (s == "linear") return nn::LrSchedule::linear;
  throw_invalid("schedule must be 'constant' or 'linear', got '" + s + "'");
}

tessera::Dedup parse_dedup(std::string s) {
  if (s == "append_all") s = "append-all";
  return tessera::parse_dedup(s);
}

const char* kLayersDoc = "(2048, 1024, 512, 256, 128, 64)";

}  // namespace

void bind_neural(py::module_& m) {
  py::class_<PyRQVAE> cls(
      m, "RQVAE",
      "RQ-VAE (Lee et al., CVPR 2022; TIGER's and MiniOneRec's item tokenizer): an MLP encoder, a residual vector\n"
      "quantizer of L levels and an MLP decoder, on libtorch, with MiniOneRec's layers, parameter names and loss.\n"
      "RQVAE.rqkmeans_plus() makes RQ-KMeans+ (residual encoder, codebooks of `tessera sid build`).\n"
      "Methods may be called from several Python threads (one at a time per model); heavy ones release the GIL.");

  cls.def(py::init([](int64_t in_dim, int64_t e_dim, const py::object& layers, const py::object& codebook_sizes,
                      const std::string& decoder, const std::string& commitment, double dropout, bool batch_norm, double beta, double quant_weight,
                      const py::object& sk_epsilons, int sk_iters, uint64_t seed) {
            nn::RQVAEConfig c;
            c.in_dim = in_dim;
            c.e_dim = e_dim;
            c.codebook_sizes = int_list(codebook_sizes, "codebook_sizes");
            fill_common(c, layers, decoder, commitment, dropout, batch_norm, beta, quant_weight, sk_epsilons, sk_iters, seed);
            auto model = without_gil(nullptr, [&] { return nn::RQVAEModel(c); });
            return std::make_unique<PyRQVAE>(std::move(model));
          }),
          "in_dim"_a, py::kw_only(), "e_dim"_a = 32,
          "layers"_a = py::make_tuple(2048, 1024, 512, 256, 128, 64), "codebook_sizes"_a = py::make_tuple(256, 256, 256),
          "decoder"_a = "mlp", "commitment"_a = "per-level", "dropout"_a = 0.0, "batch_norm"_a = false, "beta"_a = 0.25, "quant_weight"_a = 1.0,
          "sk_epsilons"_a = py::none(), "sk_iters"_a = 50, "seed"_a = 42,
          (std::string("A new RQ-VAE with weights drawn from seed: in_dim → layers → e_dim (encoder; the decoder\n"
                       "reversed), L = len(codebook_sizes) levels of K_l codewords of width e_dim. Defaults are\n"
                       "MiniOneRec's (layers ") +
           kLayersDoc +
           "). sk_epsilons: one Sinkhorn epsilon per level (None: argmin). decoder: 'mlp' (x̂ = MLP(q)) or\n"
           "'residual' (x̂ = q + MLP(q), the MLP's last Linear at zero; needs e_dim == in_dim). commitment:\n"
           "'per-level' (MiniOneRec: mse(sg(e_l), r_l)) or 'partial-sums' (Lee et al.: mse(sg(e_0+...+e_l), z)).\n"
           "Initialise the codebooks with init_codebooks_kmeans(x) before fit(), as MiniOneRec does.")
              .c_str());

  cls.def_static(
      "rqkmeans_plus",
      [](const py::object& codebooks_npz, const py::object& in_dim, const py::object& layers,
         const std::string& decoder, const std::string& commitment, double dropout,
         bool batch_norm, double beta, double quant_weight, const py::object& sk_epsilons, int sk_iters,
         uint64_t seed) {
        const std::string path = path_str(codebooks_npz);
        nn::RQVAEConfig c;
        fill_common(c, layers, decoder, commitment, dropout, batch_norm, beta, quant_weight, sk_epsilons, sk_iters, seed);
        const bool dim_given = !in_dim.is_none();
        if (dim_given) c.in_dim = in_dim.cast<int64_t>();
        auto model = without_gil(nullptr, [&] {
          if (!dim_given) {  // the width of codebook_0
            const auto members = tessera::read_npz_f32(path);
            c.in_dim = 0;
            for (const auto& [name, mat] : members)
              if (name == "codebook_0") c.in_dim = int64_t(mat.cols());
            TESSERA_CHECK_ARG(c.in_dim > 0, path << " holds no codebook_0 (expected members codebook_0, codebook_1, "
                                                    "…, as `tessera sid build` writes)");
          }
          c.e_dim = c.in_dim;
          c.residual_encoder = true;
          c.codebook_sizes.clear();  // from the npz
          return nn::RQVAEModel::rqkmeans_plus(c, path);
        });
        return std::make_unique<PyRQVAE>(std::move(model));
      },
      "codebooks_npz"_a, py::kw_only(), "in_dim"_a = py::none(),
      "layers"_a = py::make_tuple(2048, 1024, 512, 256, 128, 64), "decoder"_a = "residual", "commitment"_a = "partial-sums",
      "dropout"_a = 0.0,
      "batch_norm"_a = false, "beta"_a = 0.25, "quant_weight"_a = 1.0, "sk_epsilons"_a = py::none(), "sk_iters"_a = 50, "seed"_a = 42,
      "RQ-KMeans+: an RQ-VAE whose encoder is z = x + MLP(x) with the MLP's last Linear at zero, and whose\n"
      "codebooks are those of codebooks_npz (codebook_0, codebook_1, ... as `tessera sid build` and\n"
      "SemanticIds.save() write them): before training its codes are exactly RQ-KMeans's greedy codes.\n"
      "in_dim (= e_dim) and the codebook sizes come from the file; in_dim, when given, must match it.\n"
      "decoder: 'residual' (default: x̂ = q + MLP(q), the MLP's last Linear at zero, so the model also\n"
      "reconstructs exactly as RQ-KMeans before training) or 'mlp' (x̂ = MLP(q) from random weights, as\n"
      "MiniOneRec). commitment: 'partial-sums' (default: level l holds z to e_0 + ... + e_l, Lee et al.'s\n"
      "RQ-VAE; training then keeps RQ-KMeans's reconstruction) or 'per-level' (MiniOneRec's mse(sg(e_l), r_l)).");

  cls.def_static(
      "from_checkpoint",
      [](const py::object& path) {
        const std::string p = path_str(path);
        auto model = without_gil(nullptr, [&] { return nn::RQVAEModel::from_checkpoint(p); });
        return std::make_unique<PyRQVAE>(std::move(model));
      },
      "path"_a,
      "The model of a training checkpoint (fit(checkpoint_dir=...): epoch_{e}.ckpt, best_loss.ckpt, ...): its\n"
      "configuration and weights.");

  cls.def(
      "init_codebooks_kmeans",
      [](PyRQVAE& r, const py::object& x, size_t rows_per_centroid, size_t sample, int max_iter, int n_init,
         uint64_t seed, long long batch_size) {
        F32In in = model_input(r, x);
        nn::CodebookInitParams p;
        p.rows_per_centroid = rows_per_centroid;
        p.sample = sample;
        p.max_iter = max_iter;
        p.n_init = n_init;
        p.seed = seed;
        p.batch_size = batch_arg(batch_size);
        locked(r, nullptr, [&] { r.m.init_codebooks_kmeans(in.view, p); });
      },
      "x"_a, py::kw_only(), "rows_per_centroid"_a = 64, "sample"_a = 0, "max_iter"_a = 100, "n_init"_a = 1,
      "seed"_a = 42, "batch_size"_a = 4096,
      "k-means initialisation of the codebooks, level by level on the residuals of the encoder's latents of a\n"
      "sample of x: n × in_dim (max(rows_per_centroid · max K, sample) rows; all rows when there are fewer).");

  cls.def(
      "fit",
      [](PyRQVAE& r, const py::object& x, int epochs, const py::object& lr, long long batch_size,
         double weight_decay, int warmup_epochs, const std::string& schedule, double clip_grad_norm, uint64_t seed,
         int eval_every, const py::object& checkpoint_dir, int keep_last, const py::object& resume,
         const py::object& on_epoch, const py::object& progress) {
        F32In in = model_input(r, x);
        if (epochs < 0) throw_invalid("epochs must be ≥ 0, got " + std::to_string(epochs));
        nn::TrainerParams p;
        // MiniOneRec: rqvae.py 1e-3, rqkmeans_plus.py 1e-4 (as the CLI's defaults).
        p.lr = lr.is_none() ? (r.m.config().residual_encoder ? 1e-4 : 1e-3) : lr.cast<double>();
        p.batch_size = batch_arg(batch_size);
        p.weight_decay = weight_decay;
        p.epochs = epochs;
        p.warmup_epochs = warmup_epochs;
        p.schedule = parse_schedule(schedule);
        p.clip_grad_norm = clip_grad_norm;
        p.seed = seed;
        p.eval_every = eval_every;
        if (!checkpoint_dir.is_none()) p.checkpoint_dir = path_str(checkpoint_dir);
        p.keep_last = keep_last;
        if (!resume.is_none()) p.resume = path_str(resume);
        Progress prog(progress);
        EpochCallback epoch_cb(on_epoch);
        p.progress = prog.fn();
        p.on_epoch = epoch_cb.fn();
        std::vector<nn::EpochReport> reports;
        try {
          reports = locked(r, nullptr, [&] { return r.m.train(in.view, p); });
        } catch (const CallbackAbort&) {
          if (py::error_already_set* e = epoch_cb.error()) throw *e;
          prog.rethrow();
        }
        py::list out;
        for (const auto& rep : reports) out.append(report_dict(rep));
        return out;
      },
      "x"_a, "epochs"_a, py::kw_only(), "lr"_a = py::none(), "batch_size"_a = 2048, "weight_decay"_a = 0.0,
      "warmup_epochs"_a = 0, "schedule"_a = "constant", "clip_grad_norm"_a = 1.0, "seed"_a = 42,
      "eval_every"_a = 0, "checkpoint_dir"_a = py::none(), "keep_last"_a = 5, "resume"_a = py::none(),
      "on_epoch"_a = py::none(), "progress"_a = py::none(),
      "Train on x: n × in_dim for `epochs` epochs (AdamW; lr None: 1e-4 for RQ-KMeans+, 1e-3 for RQ-VAE, as\n"
      "MiniOneRec; warm-up then a 'constant' or 'linear' schedule; gradients clipped to clip_grad_norm, <= 0:\n"
      "no clipping). Same seed → same weights. eval_every: codes of all rows (collision rate, codes used) after\n"
      "every eval_every-th epoch and the last one. checkpoint_dir: checkpoints after every evaluation\n"
      "(epoch_{e}.ckpt, the keep_last newest kept; best_loss.ckpt, best_collision.ckpt); resume: a checkpoint\n"
      "to continue from (same data, batch size and seed: the run that never stopped, bit for bit).\n"
      "Returns one dict per epoch: epoch, loss (mean total loss per row), reconstruction, quantization,\n"
      "seconds, and collision_rate, codes_used after an evaluation. on_epoch(report: dict) after every epoch;\n"
      "progress(stage, done, total, value) per batch; Ctrl-C stops training with KeyboardInterrupt.");

  cls.def(
      "codes",
      [](PyRQVAE& r, const py::object& x, long long batch_size) {
        F32In in = model_input(r, x);
        const size_t bs = batch_arg(batch_size);
        auto st = locked(r, nullptr, [&] { return r.m.codes(in.view, bs); });
        return matrix_to_numpy(std::move(st.codes));
      },
      "x"_a, py::kw_only(), "batch_size"_a = 4096,
      "Greedy codes of x: n × in_dim → n × L int32 (0-based), in evaluation mode.");

  cls.def(
      "code_stats",
      [](PyRQVAE& r, const py::object& x, long long batch_size) {
        F32In in = model_input(r, x);
        const size_t bs = batch_arg(batch_size);
        auto st = locked(r, nullptr, [&] { return r.m.codes(in.view, bs); });
        const auto cs = without_gil(nullptr, [&] { return tessera::collision_stats(st.codes.view()); });
        return py::dict("collision_rate"_a = st.collision_rate, "codes_used"_a = st.codes_used,
                        "unique_ids"_a = cs.unique_ids, "largest_group"_a = cs.largest_group,
                        "colliding_items"_a = cs.colliding_items);
      },
      "x"_a, py::kw_only(), "batch_size"_a = 4096,
      "What the codes of x look like: {'collision_rate' (1 - unique/n), 'codes_used' (per level),\n"
      "'unique_ids', 'largest_group', 'colliding_items'}.");

  cls.def(
      "collision_rate",
      [](PyRQVAE& r, const py::object& x, long long batch_size) {
        F32In in = model_input(r, x);
        const size_t bs = batch_arg(batch_size);
        return locked(r, nullptr, [&] { return r.m.codes(in.view, bs).collision_rate; });
      },
      "x"_a, py::kw_only(), "batch_size"_a = 4096, "1 - (distinct code tuples) / n of the codes of x.");

  cls.def(
      "latent",
      [](PyRQVAE& r, const py::object& x, long long batch_size) {
        F32In in = model_input(r, x);
        const size_t bs = batch_arg(batch_size);
        return matrix_to_numpy(locked(r, nullptr, [&] { return r.m.latent(in.view, bs); }));
      },
      "x"_a, py::kw_only(), "batch_size"_a = 4096,
      "The encoder's latents of x: n × in_dim → n × e_dim float32 (what the quantizer codes), evaluation mode.");

  cls.def(
      "reconstruct",
      [](PyRQVAE& r, const py::object& x, long long batch_size) {
        F32In in = model_input(r, x);
        const size_t bs = batch_arg(batch_size);
        return matrix_to_numpy(locked(r, nullptr, [&] { return r.m.reconstruct(in.view, bs); }));
      },
      "x"_a, py::kw_only(), "batch_size"_a = 4096,
      "The decoder's reconstruction of x: n × in_dim → n × in_dim float32, evaluation mode.");

  cls.def(
      "decode",
      [](PyRQVAE& r, const py::object& codes, long long batch_size) {
        I32In c = as_i32(codes, "codes", "n × L int32");
        if (c.view.cols != r.m.num_levels())
          throw_invalid("codes has " + std::to_string(c.view.cols) + " columns, the model " +
                        std::to_string(r.m.num_levels()) + " levels");
        const size_t bs = batch_arg(batch_size);
        tessera::CodeMatrix m = tessera::CodeMatrix::copy_of(c.view);
        return matrix_to_numpy(locked(r, nullptr, [&] { return r.m.decode(m, bs); }));
      },
      "codes"_a, py::kw_only(), "batch_size"_a = 4096,
      "The decoder's output for codes: n × L (0-based) → n × in_dim float32 (for the codes of x: reconstruct(x)).");

  cls.def(
      "codebook",
      [](PyRQVAE& r, long long level) {
        const long long L = (long long)r.m.num_levels();
        if (level < 0 || level >= L)
          throw_invalid("level " + std::to_string(level) + " out of range: the model has " + std::to_string(L));
        return matrix_to_numpy(locked(r, nullptr, [&] { return r.m.codebook(size_t(level)); }));
      },
      "level"_a, "Codebook of a level: K_l × e_dim float32 (a copy).");

  cls.def_property_readonly(
      "codebooks",
      [](PyRQVAE& r) {
        py::list out;
        for (size_t l = 0; l < r.m.num_levels(); ++l)
          out.append(matrix_to_numpy(locked(r, nullptr, [&] { return r.m.codebook(l); })));
        return out;
      },
      "Every level's codebook (K_l × e_dim float32 copies), in level order.");

  cls.def_property_readonly(
      "config", [](PyRQVAE& r) { return config_dict(r.m.config()); },
      "The model's settings (the fields of RQVAEConfig): in_dim, e_dim, layers, codebook_sizes, dropout,\n"
      "batch_norm, beta, quant_weight, residual_encoder (True for RQ-KMeans+), sk_epsilons, sk_iters, seed.");
  cls.def_property_readonly("in_dim", [](PyRQVAE& r) { return r.m.config().in_dim; });
  cls.def_property_readonly("e_dim", [](PyRQVAE& r) { return r.m.config().e_dim; });
  cls.def_property_readonly("num_levels", [](PyRQVAE& r) { return r.m.num_levels(); });
  cls.def_property_readonly("codebook_sizes", [](PyRQVAE& r) { return py::tuple(py::cast(r.m.config().codebook_sizes)); });
  cls.def_property_readonly(
      "is_rqkmeans_plus", [](PyRQVAE& r) { return r.m.config().residual_encoder; },
      "True for an RQ-KMeans+ model (residual encoder).");

  cls.def(
      "save_state_dict",
      [](PyRQVAE& r, const py::object& path) {
        const std::string p = path_str(path);
        locked(r, nullptr, [&] { r.m.save_state_dict(p); });
      },
      "path"_a,
      "Write the parameters and buffers as a PyTorch state_dict file (torch.load reads it, also with\n"
      "weights_only=True), with MiniOneRec's names; atomically.");

  cls.def(
      "load_state_dict",
      [](PyRQVAE& r, const py::object& path) {
        const std::string p = path_str(path);
        locked(r, nullptr, [&] { reading_state_dict(p, [&] { r.m.load_state_dict(p); }); });
      },
      "path"_a,
      "Load a state_dict file of a model of the same configuration, strictly: a missing, unexpected or\n"
      "misshapen entry is an error naming it, and the model is unchanged. (Save a PyTorch model's\n"
      "dict(model.state_dict()): libtorch cannot read an OrderedDict.)");

  cls.def(
      "semantic_ids",
      [](PyRQVAE& r, const py::object& x, const std::string& dedup, const py::object& token_base,
         const std::string& balance, const py::object& labels, long long batch_size) {
        const auto t0 = std::chrono::steady_clock::now();
        F32In in = model_input(r, x);
        const size_t bs = batch_arg(batch_size);
        const tessera::Dedup d = parse_dedup(dedup);
        const nn::RQVAEConfig& c = r.m.config();
        tessera::TokenFormat fmt;
        // MiniOneRec's generate_indices_plus.py counts tokens from 1, LC-Rec's generate_indices.py from 0.
        const long long base = token_base.is_none() ? (c.residual_encoder ? 1 : 0) : token_base.cast<long long>();
        if (base != 0 && base != 1) throw_invalid("token_base must be 0 or 1, got " + std::to_string(base));
        fmt.zero_based = base == 0;
        const nn::Balance bal = nn::parse_balance(balance);
        auto lab = opt_strings(labels, "labels", in.view.rows);
        auto s = std::make_unique<PySids>();
        s->s = locked(r, nullptr, [&] {
          // As `tessera rqvae|rqkmeans-plus generate`.
          tessera::SemanticIds sids = nn::model_semantic_ids(r.m, in.view, d, fmt, bal, lab ? &*lab : nullptr, bs);
          sids.metrics.seconds_total =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          return sids;
        });
        tessera_module();  // tessera.SemanticIds and tessera.ResidualQuantizer are registered there
        s->model = py::cast(std::make_unique<PyRQ>(s->s.model));
        return s;
      },
      "x"_a, py::kw_only(), "dedup"_a = "append", "token_base"_a = py::none(), "balance"_a = "none",
      "labels"_a = py::none(), "batch_size"_a = 4096,
      "Semantic IDs of x: n × in_dim with this model, as `tessera rqvae|rqkmeans-plus generate` makes them:\n"
      "the model's codes resolved with dedup ('append', 'append-all', 'reassign' on the latents and the last\n"
      "codebook, 'none'), with the metrics of the semantic-ID module on the latents (dim = e_dim) plus\n"
      "recon_mse (the decoder's reconstruction error from the codes given). balance: 'none' (the model's\n"
      "greedy codes), 'last' or 'all' (exact size bounds over all items on the last / every level, with the\n"
      "balanced assigner on the latents' residuals). token_base: 1 (MiniOneRec, the default for RQ-KMeans+)\n"
      "or 0 (LC-Rec, the default for RQ-VAE). Returns tessera.SemanticIds (its model: a ResidualQuantizer of\n"
      "the model's codebooks in latent space); save(dir, with_model=False) writes what the CLI writes.");

  cls.def("__repr__", [](PyRQVAE& r) {
    const nn::RQVAEConfig& c = r.m.config();
    return std::string(c.residual_encoder ? "RQVAE.rqkmeans_plus" : "RQVAE") + "(in_dim=" + std::to_string(c.in_dim) +
           ", e_dim=" + std::to_string(c.e_dim) + ", layers=(" + join(c.layers) + "), codebook_sizes=(" +
           join(c.codebook_sizes) + "))";
  });

  m.def(
      "set_torch_threads", [](int n) { nn::RQVAEModel::set_torch_threads(n); }, "n"_a,
      "Threads of libtorch's element-wise work in this process (n <= 0: leave torch's default).");
}

}  // namespace tessera_py

PYBIND11_MODULE(_neural, m) {
  namespace py = pybind11;
  using namespace tessera_py;
  m.doc() = "tessera._neural: RQ-VAE and RQ-KMeans+ on libtorch (use it through tessera.neural).";
  m.attr("__version__") = TESSERA_VERSION;

  // tessera._tessera's exception types (and its classes, for semantic_ids()).
  py::module_ t = tessera_module();
  g_error = py::object(t.attr("Error")).release().ptr();
  g_invalid = py::object(t.attr("InvalidArgument")).release().ptr();
  g_format = py::object(t.attr("FormatError")).release().ptr();
  g_ioerror = py::object(t.attr("IOError")).release().ptr();
  py::register_local_exception_translator(&translate_tessera_error);
  tessera::set_interrupt_check(&python_interrupt_check);

  bind_neural(m);
}
