// The operator panel's translation table (panel.hpp): every operator-facing
// text, English and Simplified Chinese, in one place. The page gets the
// table of the configured language (/api/config); the server's own answers
// (errors, the unit page's "not found") come from here too.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "eol/station/panel.hpp"

namespace eol::station::web {

const std::vector<PanelText>& panel_texts() {
    // key, English, 简体中文 (sorted by key below; a test checks the keys are
    // unique and both languages present). The page looks texts up by key
    // and shows the key itself if one is missing.
    static const std::vector<PanelText> table = [] {
        std::vector<PanelText> t{
        {"abort", "Abort", "中止"},
        {"aborted", "ABORTED", "已中止"},
        {"alarms", "Alarms", "报警"},
        {"banner_abort", "ABORTED", "已中止"},
        {"banner_error", "ERROR", "错误"},
        {"banner_fail", "FAIL", "不合格"},
        {"banner_hold", "HOLD", "隔离"},
        {"banner_pass", "PASS", "合格"},
        {"bad_request", "Bad request", "请求无效"},
        {"cancel", "Cancel", "取消"},
        {"channel", "Channel", "通道"},
        {"channel_faulted", "Channel {0} faulted: {1}", "通道 {0} 故障：{1}"},
        {"confirm_abort", "Abort the test on channel {0}?", "中止通道 {0} 的测试？"},
        {"connection_lost", "Connection to the station lost; reconnecting…", "与工位的连接已断开，正在重连…"},
        {"count_abort", "Aborted", "中止"},
        {"count_error", "Error", "错误"},
        {"count_fail", "Fail", "不合格"},
        {"count_hold", "Hold", "隔离"},
        {"count_pass", "Pass", "合格"},
        {"count_tested", "Tested", "已测"},
        {"current", "Current (A)", "电流 (A)"},
        {"elapsed", "Elapsed", "已用时间"},
        {"error", "ERROR", "错误"},
        {"instrument_down", "Instrument {0} down: {1}", "仪器 {0} 断开：{1}"},
        {"last_cells", "Last 50 cells", "最近 50 个电芯"},
        {"logged_in_as", "Logged in: {0} ({1})", "已登录：{0}（{1}）"},
        {"login", "Log in", "登录"},
        {"login_failed", "Wrong user name or password", "用户名或密码错误"},
        {"login_rate_limited", "Too many failed logins for this name; wait and try again", "该用户登录失败次数过多，请稍后再试"},
        {"login_required", "Log in as an operator first", "请先以操作员身份登录"},
        {"logout", "Log out", "退出"},
        {"method_not_allowed", "Method not allowed", "不允许的请求方法"},
        {"no_alarms", "No alarms", "无报警"},
        {"no_cells", "No cells tested yet", "尚未测试电芯"},
        {"not_found", "Not found", "未找到"},
        {"not_testing", "Channel {0} is not testing", "通道 {0} 未在测试"},
        {"password", "Password", "密码"},
        {"plc_stale", "PLC heartbeat missing or stale (its cells are aborted)", "PLC 心跳丢失或超时（其测试将被中止）"},
        {"plots_unavailable", "Live plots unavailable: the chart library (Debian package libjs-chart.js) is not installed", "实时曲线不可用：未安装图表库（Debian 软件包 libjs-chart.js）"},
        {"ready", "Ready", "就绪"},
        {"reason", "Reason", "原因"},
        {"reset", "Fault reset", "故障复位"},
        {"reset_ok", "Channel {0} reset", "通道 {0} 已复位"},
        {"scan_serial", "Scan serial, Enter", "扫描序列号，回车"},
        {"serial", "Serial", "序列号"},
        {"server_busy", "The station is busy; try again", "工位繁忙，请重试"},
        {"shift_since", "Since {0}", "自 {0} 起"},
        {"started", "Started {0} on channel {1}", "通道 {1} 开始测试 {0}"},
        {"state", "State", "状态"},
        {"state_aborted", "aborted", "已中止"},
        {"state_complete", "complete", "完成"},
        {"state_faulted", "faulted", "故障"},
        {"state_idle", "idle", "空闲"},
        {"state_testing", "testing", "测试中"},
        {"station", "Station", "工位"},
        {"station_fault", "FAULT", "故障"},
        {"station_idle", "IDLE", "空闲"},
        {"station_running", "RUNNING", "运行中"},
        {"step", "Step", "工步"},
        {"temperature", "Temperature (°C)", "温度 (°C)"},
        {"testing", "TESTING", "测试中"},
        {"time", "Time", "时间"},
        {"title", "Operator panel", "操作面板"},
        {"too_large", "Request too large", "请求过大"},
        {"unit_page", "Unit page", "电芯页面"},
        {"unknown_serial", "Unknown serial", "未知序列号"},
        {"user", "User", "用户"},
        {"verdict", "Verdict", "判定"},
        {"voltage", "Voltage (V)", "电压 (V)"},
        {"yield", "Yield", "良率"},
        };
        std::sort(t.begin(), t.end(), [](const PanelText& a, const PanelText& b) { return a.key < b.key; });
        return t;
    }();
    return table;
}

bool known_language(std::string_view language) { return language == "en" || language == "zh-CN"; }

std::string_view panel_text(std::string_view key, std::string_view language) {
    const auto& t = panel_texts();
    const auto it = std::lower_bound(t.begin(), t.end(), key,
                                     [](const PanelText& e, std::string_view k) { return e.key < k; });
    if (it == t.end() || it->key != key) throw std::out_of_range("panel text: no key '" + std::string(key) + "'");
    return language == "zh-CN" ? it->zh_cn : it->en;
}

std::string panel_text(std::string_view key, std::string_view language, std::initializer_list<std::string_view> args) {
    const std::string_view pattern = panel_text(key, language);
    std::string out;
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        if (pattern[i] == '{' && i + 2 < pattern.size() && pattern[i + 2] == '}' && pattern[i + 1] >= '0' &&
            pattern[i + 1] <= '9') {
            const auto k = static_cast<std::size_t>(pattern[i + 1] - '0');
            if (k < args.size()) out += *(args.begin() + static_cast<std::ptrdiff_t>(k));
            i += 2;
            continue;
        }
        out += pattern[i];
    }
    return out;
}

}  // namespace eol::station::web
