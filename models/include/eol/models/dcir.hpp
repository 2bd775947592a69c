// eol/models/dcir.hpp — DC internal resistance from a current step.
//
// dcir_at: R(Δt) = (V_before − V(t_step + Δt)) / (I(t_step + Δt) − I_before)
// for the largest current step of the window, at each stated time Δt after
// it (e.g. 10 ms, 1 s, 10 s). The step is at t_step = t[k], the first sample
// at the new level; V_before and I_before are sample k−1. V and I at
// t_step + Δt are interpolated linearly between samples. Discharge positive,
// so a discharge step gives a positive R.
//
// dcir_iec61960: the IEC 61960 two-level method — a discharge at I1 (0.2 C,
// 10 s) then at I2 (1 C, 1 s): R = (U1 − U2)/(I2 − I1), U1 the voltage at the
// end of the I1 level (last sample before the step up), U2 the voltage
// `second_s` after the step, I1 and I2 the mean currents of the two levels.
//
// Errors: InputError for the window errors of Series::validate, no step
// (current constant within its noise), a Δt that is negative, beyond the
// record, past the next current change, or shorter than the sampling interval
// at the step (the step time is only known to one interval); for IEC 61960
// also no step up from a discharge level.
#pragma once

#include <cstddef>
#include <vector>

#include "eol/models/series.hpp"

namespace eol::models {

struct DcirPoint {
    double after_s = 0.0;
    double r_ohm = 0.0;
    double v_before_v = 0.0, v_after_v = 0.0;
    double i_before_a = 0.0, i_after_a = 0.0;
};

struct DcirResult {
    std::size_t step_index = 0;  // k: first sample at the new level
    double step_time_s = 0.0;    // t[k]
    std::vector<DcirPoint> points;
};

DcirResult dcir_at(const Series& s, const std::vector<double>& after_s);

struct Iec61960Result {
    double r_ohm = 0.0;
    double u1_v = 0.0, i1_a = 0.0;  // end of the low level, its mean current
    double u2_v = 0.0, i2_a = 0.0;  // second_s into the high level, its mean current
    double step_time_s = 0.0;
};

Iec61960Result dcir_iec61960(const Series& s, double second_s = 1.0);

}  // namespace eol::models
