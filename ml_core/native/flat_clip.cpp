// The book-keeping clipped sum of 2-D Linear layers, for ml_core.fast_clipping.
//
// The very arithmetic of the Python path (BookkeepingModule.clipped_sums_by_id over layers
// that recorded one 2-D input each): the same ATen kernels where the Python path calls one
// (sum over layers, sqrt, matrix products, scaling), the same IEEE operations in the same
// order elsewhere (a fused multiply-add where ATen's addcmul uses one), so its output is the
// Python path's, bit for bit (tests/ml_core/test_native_clip.py). What it saves is the
// Python around some 25 small tensor operations per step, most of a small model's private
// overhead on the CPU.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <unordered_map>
#include <vector>

namespace {

constexpr int64_t kInPlaceMinElements = 1 << 15;  // fast_clipping.IN_PLACE_MIN_ELEMENTS

const void* storage_of(const at::Tensor& t) { return t.storage().data_ptr().get(); }

// _flat_sq_norms, then Opacus' clip factor (fast_clipping.clipped_sums_by_id).
void clip_factors(at::TensorList a_norm, at::TensorList g_norm, c10::IntArrayRef bias,
                  double scale, double max_grad_norm, double epsilon, at::Tensor& norms,
                  at::Tensor& factor) {
  const int64_t count = static_cast<int64_t>(a_norm.size());
  const int64_t batch = a_norm[0].numel();
  bool all_bias = true, no_bias = true;
  for (int64_t b : bias) { all_bias = all_bias && b != 0; no_bias = no_bias && b == 0; }
  at::Tensor per_layer = at::empty({count, batch}, a_norm[0].options());
  float* out = per_layer.data_ptr<float>();
  for (int64_t k = 0; k < count; ++k) {
    const float* an = a_norm[k].data_ptr<float>();
    const float* gn = g_norm[k].data_ptr<float>();
    float* row = out + k * batch;
    // One layer: addcmul with a bias, a product without. Several: addcmul where all have
    // a bias, a product where none has, else (a^2 + 0 or 1) * g^2 (the Python path's forms).
    const bool fused = count == 1 ? bias[0] : all_bias;
    const bool product = count == 1 ? !bias[0] : no_bias;
    for (int64_t i = 0; i < batch; ++i) {
      const float g_sq = gn[i] * gn[i];
      const float a_sq = an[i] * an[i];
      if (fused) {
        row[i] = std::fma(g_sq, a_sq, g_sq);
      } else if (product) {
        row[i] = g_sq * a_sq;
      } else {
        row[i] = (a_sq + (bias[k] ? 1.0f : 0.0f)) * g_sq;
      }
    }
  }
  norms = count == 1 ? per_layer.view({batch}) : per_layer.sum(0);
  norms.sqrt_();  // ATen's kernel (its vector sqrt is not always std::sqrt's rounding)
  factor = at::empty_like(norms);
  float* n = norms.data_ptr<float>();
  float* f = factor.data_ptr<float>();
  const float s = static_cast<float>(scale);
  const float c = static_cast<float>(max_grad_norm);
  const float e = static_cast<float>(epsilon);
  for (int64_t i = 0; i < batch; ++i) {
    const float norm = n[i] * s;
    n[i] = norm;
    const float clip = (1.0f / (norm + e)) * c;  // Opacus: (C / (norm + 1e-6)).clamp(max=1)
    f[i] = (clip > 1.0f ? 1.0f : clip) * s;
  }
}

std::vector<at::Tensor> flat_clipped_sums(at::TensorList activations, at::TensorList backprops,
                                          at::TensorList activation_norms,
                                          at::TensorList backprop_norms,
                                          c10::IntArrayRef bias, double scale,
                                          double max_grad_norm, double epsilon) {
  const size_t count = activations.size();
  TORCH_CHECK(count > 0 && backprops.size() == count && activation_norms.size() == count &&
                  backprop_norms.size() == count && bias.size() == count,
              "flat_clipped_sums: one activation, output gradient, two norms and a bias flag "
              "per layer");
  for (size_t k = 0; k < count; ++k) {
    for (const at::Tensor* t : {&activations[k], &backprops[k]}) {
      TORCH_CHECK(t->dim() == 2 && t->scalar_type() == at::kFloat && t->device().is_cpu(),
                  "flat_clipped_sums: 2-D float32 CPU records only");
    }
    for (const at::Tensor* t : {&activation_norms[k], &backprop_norms[k]}) {
      TORCH_CHECK(t->dim() == 1 && t->is_contiguous() && t->scalar_type() == at::kFloat &&
                      t->numel() == activations[0].size(0),
                  "flat_clipped_sums: contiguous float32 row norms, one per sample");
    }
  }
  at::Tensor norms, factor;
  clip_factors(activation_norms, backprop_norms, bias, scale, max_grad_norm, epsilon, norms,
               factor);
  const at::Tensor column = factor.unsqueeze(1);
  // fast_clipping._InPlace: a contiguous output gradient that no other record shares.
  std::unordered_map<const void*, int> storages;
  if (count * 2 > 2) {
    for (size_t k = 0; k < count; ++k) {
      ++storages[storage_of(activations[k])];
      ++storages[storage_of(backprops[k])];
    }
  }
  std::vector<at::Tensor> out;
  out.reserve(1 + 2 * count);
  out.push_back(norms);
  for (size_t k = 0; k < count; ++k) {
    const at::Tensor& a = activations[k];
    at::Tensor g = backprops[k];
    if (a.size(1) < g.size(1)) {
      // _flat_clipped_sums: the narrower side scaled, the product written through the
      // transposed view of the parameter-shaped result.
      at::Tensor grad = at::empty({g.size(1), a.size(1)}, g.options());
      at::Tensor view = grad.t();
      at::mm_out(view, (a * column).t(), g);
      out.push_back(grad);
      if (bias[k]) out.push_back(g.t().mv(factor));
      continue;
    }
    bool in_place = g.is_contiguous();
    if (in_place && count * 2 > 2) {
      in_place = g.numel() >= kInPlaceMinElements && storages[storage_of(g)] == 1;
    }
    at::Tensor scaled = in_place ? g.mul_(column) : g * column;
    out.push_back(scaled.t().mm(a));
    if (bias[k]) out.push_back(scaled.sum(0));
  }
  return out;
}

// BookkeepingDPOptimizer.pre_step's noise: per parameter, in the parameters' order, a
// Gaussian draw of the parameter's shape from the generator into its own buffer (the same
// kernel and draws as torch.normal(0, std, shape, generator=, out=)), added to the clipped
// sum, which is then divided by the expected batch size (a mean-reduced loss).
void noisy_mean_(at::TensorList sums, at::TensorList noise, double std,
                 std::optional<at::Generator> generator, const at::Scalar& divisor,
                 bool divide) {
  TORCH_CHECK(sums.size() == noise.size(), "noisy_mean_: one noise buffer per sum");
  for (size_t k = 0; k < sums.size(); ++k) {
    at::Tensor buffer = noise[k];
    at::normal_out(buffer, 0.0, std, buffer.sizes(), generator);
  }
  for (size_t k = 0; k < sums.size(); ++k) sums[k].add_(noise[k]);
  if (divide) {
    for (const at::Tensor& sum : sums) sum.div_(divisor);
  }
}

}  // namespace

TORCH_LIBRARY(tessera, m) {
  m.def(
      "noisy_mean_(Tensor(a!)[] sums, Tensor(b!)[] noise, float std, Generator? generator, "
      "Scalar divisor, bool divide) -> ()",
      &noisy_mean_);
  m.def(
      "flat_clipped_sums(Tensor[] activations, Tensor[] backprops, Tensor[] activation_norms, "
      "Tensor[] backprop_norms, int[] bias, float scale, float max_grad_norm, float epsilon) "
      "-> Tensor[]",
      &flat_clipped_sums);
}
