// Tensor parallelism on the cpu: a context of tp ranks in one process. Every buffer holds one
// block per rank; an op runs once per rank, in rank order, with that rank's blocks (lookup()
// answers for the current rank); vd_all_reduce sums the ranks' blocks. The ops need no change
// beyond the first line of their entry point:
//   VD_API int32_t vd_op(uint64_t ctx, ...) {
//     VD_ON_EVERY_RANK(ctx, vd_op(ctx, ...));
// which, on the outermost call of a context with tp > 1, calls the entry point again once per rank
// and returns the first failure. Numbers are the sharded math, computed serially (CI checks tp 2
// and 4 against tp 1 this way; it is not meant to be fast).
#pragma once

#include <cstdint>

namespace vd {

// The rank whose blocks lookup() returns on this thread (0 outside an op).
int current_rank();
// The context's rank count (0 for a bad handle; the op's own checks then report it).
int context_tp(uint64_t ctx);

// Runs call() once per rank of ctx with that rank current. Returns false (doing nothing) when the
// caller should run its body itself: tp == 1, or already inside a rank loop.
template <typename F> bool run_on_every_rank(uint64_t ctx, F call, int32_t *status);

namespace rank_detail {
int &rank_slot();   // thread-local current rank
bool &looping();    // thread-local: inside run_on_every_rank
} // namespace rank_detail

// f() with rank r current (vd_all_reduce reads every rank's block in one call).
template <typename F> auto with_rank(int r, F f) {
  const int before = rank_detail::rank_slot();
  rank_detail::rank_slot() = r;
  auto out = f();
  rank_detail::rank_slot() = before;
  return out;
}

template <typename F> bool run_on_every_rank(uint64_t ctx, F call, int32_t *status) {
  if (rank_detail::looping()) return false;
  const int tp = context_tp(ctx);
  if (tp <= 1) return false;
  rank_detail::looping() = true;
  int32_t st = 0;
  for (int r = 0; r < tp && st == 0; r++) {
    rank_detail::rank_slot() = r;
    st = call();
  }
  rank_detail::rank_slot() = 0;
  rank_detail::looping() = false;
  *status = st;
  return true;
}

} // namespace vd

#define VD_ON_EVERY_RANK(ctx, call)                                                                 \
  do {                                                                                              \
    int32_t vd_rank_status_ = 0;                                                                    \
    if (::vd::run_on_every_rank((ctx), [&]() -> int32_t { return (call); }, &vd_rank_status_))     \
      return vd_rank_status_;                                                                       \
  } while (0)
