// Kernel-level timings of the CPU block-sparse kernels, without torch: packing,
// forward, dX and dvalues on one layer. Built by CMakeLists.txt (not by setup.py):
//   bench_kernels [linear|conv] [density] [block] [linear batch]
//   bench_kernels element-cache     the element kernels' vector arithmetic (one thread) on
//                                   activations of 16 KB to 128 MB: GFLOP/s per cache level
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/bsr_product_kernels.h"
#include "cpu/element_kernels.h"

using namespace suptickets::cpu;

namespace {

template <class F>
double min_ms(F&& f, int reps = 9) {
  f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[0];  // the minimum: the least disturbed run
}

}  // namespace

// One thread: 4096 items at random 16-float-aligned offsets into an activation of `bytes`, each
// a 128-element multiply-add (gather, the forward and dX) or dot product (dvalues).
void element_cache_sweep() {
  const ElementMath<float> math = element_math<float>();
  std::printf("element kernels (%s), 1 thread, runs of %ld elements\n", simd_level(), (long)kElementRun);
  for (const int64_t bytes : {int64_t(16) << 10, int64_t(128) << 10, int64_t(512) << 10, int64_t(2) << 20,
                              int64_t(16) << 20, int64_t(128) << 20}) {
    const int64_t n = bytes / 4, items = 4096, reps = 1000;
    std::vector<float> src(n + 256, 1.0f), out(kElementRun), acc(items);
    std::vector<int32_t> off(items);
    std::vector<float> value(items, 0.5f);
    std::mt19937 rng(0);
    for (auto& o : off) o = int32_t(rng() % uint32_t((n - kElementRun) / 16)) * 16;
    ElementSegment seg{0, items, 0};
    const double flops = 2.0 * kElementRun * items;
    const double t_gather = min_ms(
        [&] {
          for (int64_t r = 0; r < reps; ++r) {
            seg.base = (r % 4) * 16;
            math.gather(src.data(), &seg, 1, off.data(), value.data(), 1, 1, nullptr, out.data(), 0, kElementRun);
          }
        },
        3);
    const double t_dot = min_ms(
        [&] {
          for (int64_t r = 0; r < reps; ++r)
            math.dot(src.data() + (r % 4) * 16, 0, 1, src.data(), 0, off.data(), items, acc.data(), 0, kElementRun);
        },
        3);
    std::printf("%9ld KB: gather %6.1f GFLOP/s, dot %6.1f GFLOP/s (%g)\n", long(bytes >> 10),
                flops * reps / t_gather / 1e6, flops * reps / t_dot / 1e6, double(out[0] + acc[0]));
  }
}

int main(int argc, char** argv) {
  const std::string kind = argc > 1 ? argv[1] : "linear";
  if (kind == "element-cache") {
    element_cache_sweep();
    return 0;
  }
  const double density = argc > 2 ? std::atof(argv[2]) : 0.1;
  const int64_t bs = argc > 3 ? std::atoll(argv[3]) : 32;
  const int64_t n = argc > 4 ? std::atoll(argv[4]) : 4096;
  ConvGeometry g{};
  if (kind == "linear") {
    g = {1, 1024, 1, n, getenv("COUT") ? atoll(getenv("COUT")) : 4096, 1, n, 1, 1, 1, 1, 0, 0, 1, 1, bs, bs};
  } else {
    g = {64, 256, 16, 16, 256, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, bs, bs};
  }
  const int64_t nrb = g.out_blocks(), ncols = g.KH * g.KW * g.in_blocks();
  std::mt19937 rng(0);
  std::vector<int32_t> all(nrb * ncols);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int32_t>(i);
  std::shuffle(all.begin(), all.end(), rng);
  const int64_t nnz = std::max<int64_t>(1, static_cast<int64_t>(density * all.size() + 0.5));
  std::vector<int32_t> chosen(all.begin(), all.begin() + nnz);
  std::sort(chosen.begin(), chosen.end());
  std::vector<int32_t> rows(nnz), cols(nnz), row_ptr(nrb + 1, 0), col_ptr(ncols + 1, 0), perm(nnz);
  for (int64_t s = 0; s < nnz; ++s) {
    rows[s] = chosen[s] / ncols;
    cols[s] = chosen[s] % ncols;
    row_ptr[rows[s] + 1]++;
    col_ptr[cols[s] + 1]++;
  }
  for (int64_t i = 0; i < nrb; ++i) row_ptr[i + 1] += row_ptr[i];
  for (int64_t i = 0; i < ncols; ++i) col_ptr[i + 1] += col_ptr[i];
  std::vector<int32_t> fill(col_ptr.begin(), col_ptr.end() - 1);
  for (int64_t s = 0; s < nnz; ++s) perm[fill[cols[s]]++] = static_cast<int32_t>(s);

  std::uniform_real_distribution<float> u(-1, 1);
  const int64_t xn = g.B * g.Cin * g.H * g.W, yn = g.B * g.Cout * g.Ho * g.Wo;
  std::vector<float> x(xn), y(yn), gy(yn), vals(nnz * bs * bs), vt(vals.size()), dv(vals.size());
  for (auto& v : x) v = u(rng);
  for (auto& v : gy) v = u(rng);
  for (auto& v : vals) v = u(rng);
  std::vector<float> xp(g.in_blocks() * g.in_stripe()), gp(g.out_blocks() * g.out_stripe()),
      dx(g.in_blocks() * g.in_stripe());
  // x is NCHW (linear: [N, C]); grad is NHWC as the forward writes it.
  const bool lin = kind == "linear";
  const int64_t sx[4] = {lin ? 0 : g.Cin * g.H * g.W, lin ? 1 : g.H * g.W, lin ? 0 : g.W, lin ? g.Cin : 1};
  const double flops = 2.0 * g.B * g.Ho * g.Wo * g.Cout * g.Cin * g.KH * g.KW * double(nnz) / all.size();
  auto pack_x = [&] {
    pack_stripes<float>(x.data(), g.B, g.Cin, g.H, g.W, sx[0], sx[1], sx[2], sx[3], bs, g.PH, g.PW, xp.data());
  };
  auto pack_g = [&] {
    pack_stripes<float>(gy.data(), g.B, g.Cout, g.Ho, g.Wo, g.Ho * g.Wo * g.Cout, 1, g.Wo * g.Cout, g.Cout, bs, 0, 0,
                        gp.data());
  };
  pack_x();
  pack_g();
  const double t_px = min_ms(pack_x), t_pg = min_ms(pack_g);
  const Grid xgrid{g.in_stripe(), bs, g.Hp(), g.Wp(), g.PH, g.PW};
  auto forward = [&](const float* src, const Grid& xs) {
    return min_ms(
        [&] { conv_forward<float>(g, src, xs, vals.data(), row_ptr.data(), cols.data(), nullptr, y.data()); });
  };
  const double t_f = forward(xp.data(), xgrid);
  // the linear input read in place: rows of C features are pixels
  const Grid xrows{bs, g.Cin, 1, g.W, 0, 0};
  const double t_f_direct = lin ? forward(x.data(), xrows) : 0.0;
  // grad-out read from packed stripes, or straight from the NHWC tensor; dX gathers
  // from dY padded as grad_out_padding() says (packed again here for it).
  int64_t top = 0, left = 0;
  grad_out_padding(g, &top, &left);
  const int64_t Hg = g.Ho + 2 * top, Wg = g.Wo + 2 * left;
  std::vector<float> gpad(g.out_blocks() * g.B * Hg * Wg * bs);
  pack_stripes<float>(gy.data(), g.B, g.Cout, g.Ho, g.Wo, g.Ho * g.Wo * g.Cout, 1, g.Wo * g.Cout, g.Cout, bs, top, left,
                      gpad.data());
  const Grid padded{g.B * Hg * Wg * bs, bs, Hg, Wg, top, left}, packed{g.out_stripe(), bs, g.Ho, g.Wo, 0, 0},
      direct{bs, g.Cout, g.Ho, g.Wo, 0, 0};
  const bool gathers = grad_input_gathers(g);
  auto grad_input = [&](const float* src, const Grid& gs) {
    return min_ms([&] {
      if (!gathers) std::memset(dx.data(), 0, dx.size() * sizeof(float));
      conv_grad_input<float>(g, src, gs, vals.data(), rows.data(), col_ptr.data(), perm.data(), dx.data(),
                             {g.bc, g.Cin, g.H, g.W, 0, 0});
    });
  };
  auto grad_values = [&](const float* src, const Grid& gs, const float* xsrc = nullptr, const Grid* xs = nullptr) {
    return min_ms([&] {
      conv_grad_values<float>(g, src, gs, xsrc ? xsrc : xp.data(), xs ? *xs : xgrid, rows.data(), cols.data(), nnz,
                              dv.data());
    });
  };
  const double t_dx = grad_input(gpad.data(), padded), t_dv = grad_values(gp.data(), packed);
  const double t_dx_direct = top || left ? 0.0 : grad_input(gy.data(), direct);
  const double t_dv_direct = grad_values(gy.data(), direct);
  const double t_dv_xdirect = lin ? grad_values(gp.data(), packed, x.data(), &xrows) : 0.0;
  std::printf("%s density %.3f block %ld, %d threads, %s\n", kind.c_str(), double(nnz) / all.size(), (long)bs,
              omp_get_max_threads(), simd_level());
  std::printf("pack x %.2f ms, pack grad %.2f ms\n", t_px, t_pg);
  for (auto [name, t] : {std::pair<const char*, double>{"forward", t_f},
                         {"grad input", t_dx},
                         {"grad values", t_dv},
                         {"forward, unpacked input", t_f_direct},
                         {"grad input, unpacked grad", t_dx_direct},
                         {"grad values, unpacked grad", t_dv_direct},
                         {"grad values, unpacked input", t_dv_xdirect}})
    std::printf("%-26s %7.2f ms  %6.1f GFLOP/s\n", name, t, flops / t / 1e6);
  return 0;
}
