// gpsfleet NOC dashboard: a single page over the /api/v1 endpoints, no framework, no build.
// Every data call carries the bearer token kept in sessionStorage; a 401 goes back to sign-in.
// Text is set with textContent (never innerHTML), so nothing a terminal sends can run here.
'use strict';

const POLL_MS = 5000;
const TRACK_MS = 30000;
const TRACK_POINTS = 20000;
const TOKEN_KEY = 'gpsfleet.token';
const LANG_KEY = 'gpsfleet.lang';
const STAFF = ['admin', 'manager', 'noc', 'clerk', 'technician', 'finance'];
// Mirrors the API's require_roles, only to hide buttons a role may not use; the API decides.
const MAY = {
  acknowledge: ['admin', 'manager', 'noc'],
  openTicket: ['admin', 'manager', 'noc', 'clerk'],
  quarantine: STAFF,
  claim: ['admin', 'manager', 'noc'],
  reports: ['admin', 'manager', 'finance'],
};
const TRANSITION_ROLES = {
  approved: ['admin', 'manager'],
  dispatched: ['admin', 'manager'],
  in_progress: ['admin', 'manager', 'technician'],
  resolved: ['admin', 'manager', 'technician'],
  closed: ['admin', 'manager', 'noc', 'clerk'],
  cancelled: ['admin', 'manager', 'clerk'],
};
const FAULTS = [
  'offline', 'no_fix', 'frozen_fix', 'gnss_antenna_cut', 'gnss_antenna_short', 'gnss_fault',
  'device_fault', 'power_cut', 'main_voltage_low', 'backup_battery_low', 'weak_gsm',
  'sim_mismatch', 'clock_drift', 'data_errors',
];
const DIMENSIONS = ['connectivity', 'gnss', 'power', 'battery', 'gsm', 'sim', 'clock', 'data_quality'];
const TICKET_STATES = ['open', 'approved', 'dispatched', 'in_progress', 'resolved', 'closed', 'cancelled'];
const PRIORITIES = ['urgent', 'high', 'normal', 'low'];

const I18N = {
  en: {
    title: 'gpsfleet NOC', nav_terminals: 'Terminals', nav_alerts: 'Alerts', nav_tickets: 'Tickets',
    nav_quarantine: 'Quarantine', sign_out: 'Sign out', sign_in: 'Sign in',
    signin_title: 'Sign in to the gpsfleet dashboard',
    signin_help: 'Paste your API token (from `gpsfleet token create`). It is kept for this browser tab only.',
    token: 'Token', signed_out_401: 'Your token was refused (unknown or revoked): sign in again.',
    loading: 'Loading…', error: 'Error', offline_banner: 'The API does not answer: {msg}. Retrying.',
    total: 'Terminals', online: 'Online', offline: 'Offline', never_seen: 'Never seen', faulty: 'Faulty',
    all: 'All', search: 'Search device, serial, plate, customer', show: 'Show', per_page: 'per page',
    page_of: '{from}–{to} of {total}', prev: '‹ Prev', next: 'Next ›', nothing: 'Nothing to show.',
    device: 'Terminal', plate: 'Vehicle', customer: 'Customer', model: 'Model', status: 'Status',
    last_seen: 'Last seen', last_position: 'Last position', power: 'Power', battery: 'Battery',
    signal: 'Signal', faults: 'Open faults', never: 'never',
    alerts_title: 'Alerts', state: 'State', fault: 'Fault', severity: 'Severity', raised_at: 'Raised',
    occurrences: 'Count', acknowledged: 'Acknowledged', acknowledge: 'Acknowledge', comment: 'Comment',
    ack_by: '{who}, {when}', open_states: 'Open', open_tickets: 'Open (not yet resolved)', cleared_at: 'Cleared',
    tickets_title: 'Repair tickets', number: 'No.', priority: 'Priority', created: 'Opened',
    response_due: 'Response due', repair_due: 'Repair due', warranty: 'Warranty',
    in_warranty: 'in warranty', out_of_warranty: 'out of warranty', until: 'until {date}', purchased: 'bought {date}',
    open_ticket: 'Open a ticket', symptoms: 'Symptoms', contact: 'Contact', phone: 'Phone',
    actions: 'Actions', move_to: 'Move ticket {number} to “{state}”', overdue: 'overdue',
    reported: 'reported by customer', to_verify: 'fault cleared: verify', save: 'Save', cancel: 'Cancel',
    quarantine_title: 'Unknown terminals (quarantine)', protocol: 'Protocol', transport: 'Transport',
    remote: 'From', first_seen: 'First seen', sightings: 'Frames', claimed_by: 'Claimed by',
    claim: 'Claim', note: 'Note',
    terminal_title: 'Terminal {id}', health: 'Health', dimension: 'Dimension', value: 'Value',
    since: 'Since', track: 'Track', no_track: 'No fixes in this period.', track_cut: 'the oldest only: choose a shorter period', last_hours: 'last {n} h',
    track_points: '{n} fixes, about {km} km across', track_point: 'one fix', history: 'Installations', swaps: 'Swaps',
    from: 'From', to: 'To', sim: 'SIM', installed_by: 'Installed by', end_reason: 'Ended because',
    registry: 'Registry', serial: 'Serial', firmware: 'Firmware', enabled: 'Enabled', yes: 'yes', no: 'no',
    open_alerts: 'Open alerts', tickets_of: 'Tickets', back: '‹ Back', reason: 'Reason',
    done: 'Done.', role: 'role', view_all: 'all',
    when: 'When', swap_kind: 'Swap', old_new: 'Old → new', performed_by: 'By',
    k_terminal: 'terminal', k_sim: 'SIM', plate_search: 'Vehicle plate',
    or_plate: 'or the vehicle’s plate',
    dim_connectivity: 'Connectivity', dim_gnss: 'GNSS', dim_power: 'Main power', dim_battery: 'Backup battery',
    dim_gsm: 'GSM', dim_sim: 'SIM', dim_clock: 'Clock', dim_data_quality: 'Data quality',
    v_online: 'online', v_offline: 'offline', v_never_seen: 'never seen', v_fix: 'fix', v_no_fix: 'no fix',
    v_frozen: 'frozen', v_unknown: 'unknown', v_on: 'on', v_cut: 'cut', v_low: 'low', v_ok: 'ok',
    v_weak: 'weak', v_match: 'match', v_mismatch: 'mismatch', v_drift: 'drift', v_poor: 'poor',
    f_offline: 'Offline', f_no_fix: 'No GNSS fix', f_frozen_fix: 'Frozen position',
    f_gnss_antenna_cut: 'GNSS antenna cut', f_gnss_antenna_short: 'GNSS antenna short',
    f_gnss_fault: 'GNSS module fault', f_device_fault: 'Device fault', f_power_cut: 'Power cut',
    f_main_voltage_low: 'Main voltage low', f_backup_battery_low: 'Backup battery low',
    f_weak_gsm: 'Weak GSM', f_sim_mismatch: 'SIM mismatch', f_clock_drift: 'Clock drift',
    f_data_errors: 'Data errors', f_reported: 'Reported by customer',
    s_open: 'open', s_approved: 'approved', s_dispatched: 'dispatched', s_in_progress: 'in progress',
    s_resolved: 'resolved', s_closed: 'closed', s_cancelled: 'cancelled',
    s_raised: 'raised', s_acknowledged: 'acknowledged', s_cleared: 'cleared',
    s_new: 'new', s_claimed: 'claimed', s_assigned: 'assigned', s_dismissed: 'dismissed',
    p_urgent: 'urgent', p_high: 'high', p_normal: 'normal', p_low: 'low',
    r_stock: 'in stock', r_installed: 'installed', r_returned_for_repair: 'returned for repair', r_scrapped: 'scrapped',
    sev_critical: 'critical', sev_major: 'major', sev_minor: 'minor',
    nav_reports: 'Reports', reports_title: 'Ticket report', period: 'Period', month: 'Month', quarter: 'Quarter',
    zone: 'Time zone', show_report: 'Show', period_help: 'a month (2026-11) or a quarter (2026-Q4)',
    report_span: '{label}, {tz}: {start} to {end}', generated: 'figures as of {when}',
    not_allowed: 'Reports are for admin, manager and finance tokens; this {role} token may not read them.',
    volumes: 'Tickets', opened: 'Opened in period', reopened: 'of them reopened', cancelled_n: 'of them cancelled',
    resolved_in_period: 'Resolved in period', closed_in_period: 'Closed in period', open_at_end: 'Open at period end',
    by_source: 'By source', source: 'Source', src_auto: 'automatic (from an alert)', src_manual: 'by hand',
    by_priority: 'By priority', by_fault: 'By fault', tickets_n: 'Tickets', share: 'Share',
    sla_title: 'Service level (SLA)', sla_kind: 'Deadline', sla_response: 'Response', sla_repair: 'Repair',
    met: 'Met', missed: 'Missed', pending: 'Pending (not yet due)', met_percent: 'Met %',
    hours_title: 'Hours to response and repair', counted: 'Tickets counted', median: 'Median', p90: '90th percentile',
    mean: 'Mean', by_model: 'By terminal model', terminals_n: 'Terminals registered',
    per_100: 'Tickets per 100 terminals', model_faults: 'Faults', warranty_title: 'Warranty',
    w_in: 'In warranty', w_out: 'Out of warranty', w_unknown: 'Unknown',
    role_admin: 'admin', role_manager: 'manager', role_noc: 'NOC', role_clerk: 'clerk', role_technician: 'technician',
    role_finance: 'finance', role_customer: 'customer',
  },
  zh: {
    title: 'gpsfleet 监控中心', nav_terminals: '终端', nav_alerts: '告警', nav_tickets: '维修工单',
    nav_quarantine: '未知终端', sign_out: '退出', sign_in: '登录',
    signin_title: '登录 gpsfleet 监控台',
    signin_help: '请粘贴 API 令牌（由 `gpsfleet token create` 生成），仅保存在当前浏览器标签页。',
    token: '令牌', signed_out_401: '令牌被拒绝（未知或已吊销），请重新登录。',
    loading: '加载中…', error: '错误', offline_banner: 'API 无响应：{msg}，正在重试。',
    total: '终端总数', online: '在线', offline: '离线', never_seen: '从未上线', faulty: '故障',
    all: '全部', search: '搜索终端号、序列号、车牌、客户', show: '显示', per_page: '条/页',
    page_of: '第 {from}–{to} 条，共 {total} 条', prev: '‹ 上一页', next: '下一页 ›', nothing: '没有数据。',
    device: '终端', plate: '车辆', customer: '客户', model: '型号', status: '状态',
    last_seen: '最后通信', last_position: '最后位置', power: '主电源', battery: '备用电池',
    signal: '信号', faults: '当前故障', never: '从未',
    alerts_title: '告警', state: '状态', fault: '故障', severity: '级别', raised_at: '告警时间',
    occurrences: '次数', acknowledged: '已确认', acknowledge: '确认', comment: '备注',
    ack_by: '{who}，{when}', open_states: '未关闭', open_tickets: '未完成（修复前）', cleared_at: '消除时间',
    tickets_title: '维修工单', number: '单号', priority: '优先级', created: '开单时间',
    response_due: '响应期限', repair_due: '修复期限', warranty: '保修',
    in_warranty: '保修期内', out_of_warranty: '已过保', until: '至 {date}', purchased: '购于 {date}',
    open_ticket: '新建工单', symptoms: '故障现象', contact: '联系人', phone: '电话',
    actions: '操作', move_to: '将工单 {number} 改为“{state}”', overdue: '已超时',
    reported: '客户报修', to_verify: '故障已消除，待核实', save: '保存', cancel: '取消',
    quarantine_title: '未知终端（隔离区）', protocol: '协议', transport: '传输',
    remote: '来源地址', first_seen: '首次出现', sightings: '帧数', claimed_by: '认领人',
    claim: '认领', note: '备注',
    terminal_title: '终端 {id}', health: '健康状态', dimension: '项目', value: '值',
    since: '起始时间', track: '轨迹', no_track: '这段时间没有定位。', track_cut: '仅显示最早部分，请选择较短时段', last_hours: '最近 {n} 小时',
    track_points: '{n} 个定位点，跨度约 {km} 公里', track_point: '1 个定位点', history: '安装记录', swaps: '更换记录',
    from: '开始', to: '结束', sim: 'SIM 卡', installed_by: '安装人', end_reason: '结束原因',
    registry: '档案', serial: '序列号', firmware: '固件', enabled: '启用', yes: '是', no: '否',
    open_alerts: '未消除告警', tickets_of: '工单', back: '‹ 返回', reason: '原因',
    done: '已完成。', role: '角色', view_all: '全部',
    when: '时间', swap_kind: '更换', old_new: '原 → 新', performed_by: '操作人',
    k_terminal: '终端', k_sim: 'SIM 卡', plate_search: '车牌号',
    or_plate: '或车牌号',
    dim_connectivity: '连接', dim_gnss: '卫星定位', dim_power: '主电源', dim_battery: '备用电池',
    dim_gsm: 'GSM 信号', dim_sim: 'SIM 卡', dim_clock: '时钟', dim_data_quality: '数据质量',
    v_online: '在线', v_offline: '离线', v_never_seen: '从未上线', v_fix: '已定位', v_no_fix: '未定位',
    v_frozen: '位置冻结', v_unknown: '未知', v_on: '正常', v_cut: '断电', v_low: '电压低', v_ok: '正常',
    v_weak: '弱', v_match: '一致', v_mismatch: '不一致', v_drift: '偏差', v_poor: '差',
    f_offline: '离线', f_no_fix: '无卫星定位', f_frozen_fix: '位置冻结',
    f_gnss_antenna_cut: 'GPS 天线断开', f_gnss_antenna_short: 'GPS 天线短路',
    f_gnss_fault: 'GNSS 模块故障', f_device_fault: '终端故障', f_power_cut: '主电源断电',
    f_main_voltage_low: '主电源电压低', f_backup_battery_low: '备用电池电量低',
    f_weak_gsm: 'GSM 信号弱', f_sim_mismatch: 'SIM 卡不一致', f_clock_drift: '时钟偏差',
    f_data_errors: '数据错误', f_reported: '客户报修',
    s_open: '待处理', s_approved: '已批准', s_dispatched: '已派工', s_in_progress: '维修中',
    s_resolved: '已修复', s_closed: '已关闭', s_cancelled: '已取消',
    s_raised: '未确认', s_acknowledged: '已确认', s_cleared: '已消除',
    s_new: '新发现', s_claimed: '已认领', s_assigned: '已登记', s_dismissed: '已忽略',
    p_urgent: '紧急', p_high: '高', p_normal: '普通', p_low: '低',
    r_stock: '库存', r_installed: '已安装', r_returned_for_repair: '返修中', r_scrapped: '已报废',
    sev_critical: '严重', sev_major: '重要', sev_minor: '次要',
    nav_reports: '报表', reports_title: '工单报表', period: '统计周期', month: '月度', quarter: '季度',
    zone: '时区', show_report: '查询', period_help: '月份（2026-11）或季度（2026-Q4）',
    report_span: '{label}，{tz}：{start} 至 {end}', generated: '数据截至 {when}',
    not_allowed: '报表仅限管理员（admin）、经理（manager）和财务（finance）查看；当前令牌的角色（{role}）无权查看。',
    volumes: '工单数量', opened: '本期新开', reopened: '其中重新打开', cancelled_n: '其中已取消',
    resolved_in_period: '本期修复', closed_in_period: '本期关闭', open_at_end: '期末未完成',
    by_source: '按来源', source: '来源', src_auto: '自动（由告警生成）', src_manual: '人工开单',
    by_priority: '按优先级', by_fault: '按故障', tickets_n: '工单数', share: '占比',
    sla_title: '服务时限（SLA）', sla_kind: '时限', sla_response: '响应', sla_repair: '修复',
    met: '达标', missed: '超时', pending: '未到期', met_percent: '达标率',
    hours_title: '响应与修复用时（小时）', counted: '计入工单', median: '中位数', p90: '90% 分位',
    mean: '平均', by_model: '按终端型号', terminals_n: '登记终端数',
    per_100: '每百台终端工单数', model_faults: '故障', warranty_title: '保修',
    w_in: '保修期内', w_out: '已过保', w_unknown: '未知',
    role_admin: '管理员', role_manager: '经理', role_noc: '监控值班', role_clerk: '客服文员', role_technician: '技术员',
    role_finance: '财务', role_customer: '客户',
  },
};

const app = {
  token: sessionStorage.getItem(TOKEN_KEY),
  lang: 'en',
  me: null,
  route: { view: 'terminals', arg: null },
  timer: null,
  generation: 0, // bumped by each refresh; an older answer arriving late is dropped
  terminals: { q: '', show: '', sort: 'device_id', order: 'asc', limit: 100, offset: 0 },
  alerts: { state: 'open', fault: '', offset: 0, limit: 100 },
  trackHours: 24,
  track: null, // {key, at, page}: the track is fetched again only every TRACK_MS or when asked for another
  tickets: { state: 'open', priority: '', plate: '', offset: 0, limit: 100 },
  quarantine: { status: '' },
  reports: { period: '', tz: '', shown: null, fetches: 0 }, // shown: {key, report, error}: fetched once per period and zone
  summary: null,
};

// --------------------------------------------------------------------------- small helpers

function t(key, vars) {
  let text = (I18N[app.lang] && I18N[app.lang][key]) ?? I18N.en[key] ?? key;
  if (vars) for (const [name, value] of Object.entries(vars)) text = text.replaceAll(`{${name}}`, String(value));
  return text;
}
const label = (prefix, value) => (value == null ? '—' : (I18N[app.lang][prefix + value] || I18N.en[prefix + value] || String(value)));

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'class') el.className = value;
    else if (name in el && name !== 'list') el[name] = value;
    else el.setAttribute(name, value === true ? '' : value);
  }
  append(el, children);
  return el;
}
function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}
const $ = (id) => document.getElementById(id);
const may = (action) => app.me && MAY[action].includes(app.me.role);
const isStaff = () => app.me && STAFF.includes(app.me.role);

function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return new Intl.DateTimeFormat(app.lang === 'zh' ? 'zh-CN' : 'en-GB', {
    year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  }).format(d);
}
// Month, day and time (the year only when it is not this one): due times in a narrow column.
function fmtShort(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  const options = { month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' };
  if (d.getFullYear() !== new Date().getFullYear()) options.year = 'numeric';
  return new Intl.DateTimeFormat(app.lang === 'zh' ? 'zh-CN' : 'en-GB', options).format(d);
}
function ago(iso) {
  if (!iso) return t('never');
  const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
  const rtf = new Intl.RelativeTimeFormat(app.lang === 'zh' ? 'zh-CN' : 'en', { numeric: 'auto', style: 'short' });
  const abs = Math.abs(seconds);
  if (abs < 60) return rtf.format(Math.round(seconds), 'second');
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), 'minute');
  if (abs < 86400) return rtf.format(Math.round(seconds / 3600), 'hour');
  return rtf.format(Math.round(seconds / 86400), 'day');
}
const timeCell = (iso) => h('td', { title: fmtTime(iso) }, iso ? ago(iso) : t('never'));
const num = (value, digits, unit) => (value == null ? '—' : `${Number(value).toFixed(digits)}${unit || ''}`);
const fmtDate = (iso) => (iso ? String(iso).slice(0, 10) : '—');

const CLASS_OF = {
  online: 'ok', offline: 'warn', never_seen: 'grey', fix: 'ok', no_fix: 'bad', frozen: 'bad', on: 'ok',
  cut: 'bad', low: 'warn', ok: 'ok', weak: 'warn', match: 'ok', mismatch: 'bad', drift: 'warn', poor: 'warn',
  critical: 'bad', major: 'warn', minor: 'grey', raised: 'bad', acknowledged: 'warn', cleared: 'ok',
  urgent: 'bad', high: 'warn', normal: '', low: 'grey', new: 'warn', claimed: '', assigned: 'ok', dismissed: 'grey',
  open: 'warn', approved: '', dispatched: '', in_progress: '', resolved: 'ok', closed: 'grey', cancelled: 'grey',
};
const pill = (value, text) => h('span', { class: `pill ${CLASS_OF[value] || ''}` }, text);

// --------------------------------------------------------------------------- API access

class SignedOut extends Error {}
class ApiError extends Error {} // the API answered, with an error: not an outage

async function api(path, options = {}) {
  const init = { method: options.method || 'GET', headers: { Authorization: `Bearer ${app.token}` } };
  if (options.body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    signOut(t('signed_out_401'));
    throw new SignedOut();
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError((body && body.detail) || `${response.status} ${response.statusText}`);
  return body;
}
const query = (params) => {
  const out = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v != null) out.set(k, v);
  return out.toString();
};

// --------------------------------------------------------------------------- start, sign-in, language

function start() {
  // A link like /dashboard/#token=gpf_…&lang=zh&view=tickets signs in at once and opens that
  // view; the token leaves the address bar.
  const fragment = new URLSearchParams(location.hash.replace(/^#\/?/, ''));
  if (fragment.get('token')) {
    app.token = fragment.get('token');
    sessionStorage.setItem(TOKEN_KEY, app.token);
  }
  const wanted = fragment.get('lang') || localStorage.getItem(LANG_KEY) || navigator.language || 'en';
  setLanguage(wanted.toLowerCase().startsWith('zh') ? 'zh' : 'en', false);
  if (fragment.get('token') || fragment.get('lang')) {
    history.replaceState(null, '', `${location.pathname}#/${fragment.get('view') || 'terminals'}`);
  }
  window.addEventListener('hashchange', () => { readRoute(); render(); refresh(); });
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });
  readRoute();
  if (app.token) enter(); else showSignIn();
}

function setLanguage(lang, store = true) {
  app.lang = lang;
  if (store) localStorage.setItem(LANG_KEY, lang);
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  document.title = t('title');
  const box = $('lang');
  box.replaceChildren(
    h('button', { class: `small ${lang === 'zh' ? 'active' : ''}`, onclick: () => switchLanguage('zh') }, '中文'),
    h('button', { class: `small ${lang === 'en' ? 'active' : ''}`, onclick: () => switchLanguage('en') }, 'English'),
  );
}
function switchLanguage(lang) {
  setLanguage(lang);
  if (app.me) { renderChrome(); render(); refresh(); } else showSignIn();
}

function showSignIn(message) {
  stopPolling();
  app.me = null;
  $('nav').replaceChildren();
  $('who').replaceChildren();
  banner(message || null);
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', placeholder: 'gpf_…', required: true });
  $('main').replaceChildren(
    h('div', { class: 'signin panel' },
      h('h1', {}, t('signin_title')),
      h('p', { class: 'muted' }, t('signin_help')),
      h('form', {
        id: 'signin',
        onsubmit: (event) => {
          event.preventDefault();
          // a token copied with its header ("Authorization: Bearer gpf_…") is still the token
          app.token = input.value.trim().replace(/^(authorization:\s*)?bearer\s+/i, '');
          sessionStorage.setItem(TOKEN_KEY, app.token);
          enter();
        },
      }, h('label', {}, t('token'), input), h('button', { class: 'primary', type: 'submit' }, t('sign_in')))));
  input.focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  app.token = null;
  showSignIn(message);
}

async function enter() {
  try {
    app.me = await api('/api/v1/me');
  } catch (error) {
    if (!(error instanceof SignedOut)) showSignIn(`${t('error')}: ${error.message}`);
    return;
  }
  banner(null);
  renderChrome();
  render();
  refresh();
}

function banner(message, kind) {
  const el = $('banner');
  el.hidden = !message;
  el.className = `banner ${kind || ''}`;
  el.textContent = message || '';
}

function renderChrome() {
  const views = ['terminals', 'alerts', 'tickets'];
  if (may('quarantine')) views.push('quarantine');
  if (may('reports')) views.push('reports');
  $('nav').replaceChildren(...views.map((view) => h('a', {
    href: `#/${view}`, id: `nav-${view}`, class: app.route.view === view ? 'active' : '',
  }, t(`nav_${view}`))));
  $('brand').textContent = t('title');
  $('who').textContent = `${app.me.name} · ${t('role')}: ${label('role_', app.me.role)}`;
  $('who').append(' ', h('button', { class: 'small', onclick: () => signOut() }, t('sign_out')));
}

function readRoute() {
  const [view, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  const known = ['terminals', 'alerts', 'tickets', 'quarantine', 'reports', 'terminal'];
  app.route = { view: known.includes(view) ? view : 'terminals', arg: rest.length ? decodeURIComponent(rest.join('/')) : null };
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.id === `nav-${app.route.view}`);
}

// --------------------------------------------------------------------------- the one poll loop

function stopPolling() {
  clearTimeout(app.timer);
  app.timer = null;
}

async function refresh() {
  stopPolling();
  if (!app.me) return;
  const generation = ++app.generation;
  if (!document.hidden) {
    try {
      await currentView().load(generation);
      if (generation === app.generation) banner(null);
    } catch (error) {
      if (error instanceof SignedOut) return;
      if (generation !== app.generation) return;
      banner(error instanceof ApiError ? `${t('error')}: ${error.message}` : t('offline_banner', { msg: error.message }));
    }
  }
  if (generation === app.generation && app.me) app.timer = setTimeout(refresh, POLL_MS);
}
const current = (generation) => generation === app.generation;
// A customer who follows a staff link lands on the terminals.
const currentView = () => (app.route.view === 'quarantine' && !may('quarantine') ? terminalsView : VIEWS[app.route.view]);

function render() {
  if (!app.me) return;
  $('main').replaceChildren(currentView().skeleton());
}

// --------------------------------------------------------------------------- terminals view

const terminalsView = {
  skeleton() {
    const s = app.terminals;
    const search = h('input', {
      type: 'search', id: 'search', placeholder: t('search'), value: s.q,
      oninput: debounce(() => { s.q = search.value; s.offset = 0; refresh(); }, 300),
    });
    const show = h('select', { id: 'show', onchange: () => { s.show = show.value; s.offset = 0; refresh(); } },
      h('option', { value: '' }, t('all')),
      ['online', 'offline', 'never_seen', 'faulty'].map((v) => h('option', { value: v, selected: s.show === v }, t(v))),
      FAULTS.map((f) => h('option', { value: f, selected: s.show === f }, label('f_', f))));
    return h('section', { id: 'view-terminals' },
      h('div', { id: 'summary', class: 'cards' }),
      h('div', { id: 'faultcards', class: 'cards faultcards' }),
      h('div', { class: 'toolbar' }, search, h('label', { class: 'muted' }, `${t('show')} `, show), h('span', { class: 'spacer' }),
        pageSizeSelect(s)),
      h('div', { class: 'tablewrap' }, h('table', { id: 'terminal-table' }, h('thead', {}, terminalsView.header()), h('tbody', {}))),
      h('div', { class: 'pager', id: 'pager' }));
  },
  columns: [
    ['device_id', 'device'], ['plate', 'plate'], ['customer', 'customer'], ['connectivity', 'status'],
    ['last_seen', 'last_seen'], ['last_fix_time', 'last_position'], ['power_v', 'power'],
    ['battery_level', 'battery'], ['gsm_signal', 'signal'], ['faults', 'faults'],
  ],
  header() {
    const s = app.terminals;
    return h('tr', {}, terminalsView.columns.map(([key, text]) => h('th', {
      class: `sortable ${s.sort === key ? `sorted-${s.order}` : ''}`,
      onclick: () => {
        if (s.sort === key) s.order = s.order === 'asc' ? 'desc' : 'asc';
        else { s.sort = key; s.order = ['last_seen', 'faults'].includes(key) ? 'desc' : 'asc'; }
        document.querySelector('#terminal-table thead').replaceChildren(terminalsView.header());
        refresh();
      },
    }, t(text))));
  },
  async load(generation) {
    const s = app.terminals;
    const [summary, page] = await Promise.all([
      api('/api/v1/health'),
      api(`/api/v1/dashboard/terminals?${query({ q: s.q, show: s.show, sort: s.sort, order: s.order, limit: s.limit, offset: s.offset })}`),
    ]);
    if (!current(generation) || !$('view-terminals')) return;
    app.summary = summary;
    renderSummary(summary);
    $('terminal-table').tBodies[0].replaceChildren(...page.items.map(terminalRow));
    if (!page.items.length) $('terminal-table').tBodies[0].append(emptyRow(10));
    renderPager($('pager'), page, s);
  },
};

function renderSummary(summary) {
  const s = app.terminals;
  const card = (key, n, kind, text) => h('button', {
    class: `card ${kind} ${s.show === key ? 'selected' : ''}`, id: `count-${key || 'all'}`,
    onclick: () => { s.show = s.show === key ? '' : key; s.offset = 0; render(); refresh(); },
  }, h('span', { class: 'n' }, n), h('span', { class: 'l' }, text));
  $('summary').replaceChildren(
    card('', summary.terminals, '', t('total')),
    card('online', summary.online, 'ok', t('online')),
    card('offline', summary.offline, 'warn', t('offline')),
    card('never_seen', summary.never_seen, 'grey', t('never_seen')),
    card('faulty', summary.faulty, summary.faulty ? 'bad' : 'ok', t('faulty')));
  $('faultcards').replaceChildren(...Object.entries(summary.per_fault || {})
    .filter(([, n]) => n > 0)
    .map(([fault, n]) => card(fault, n, 'bad', label('f_', fault))));
}

function terminalRow(row) {
  const position = row.last_lat == null ? '—' : `${row.last_lat.toFixed(5)}, ${row.last_lon.toFixed(5)}`;
  return h('tr', { 'data-terminal': row.device_id },
    h('td', {}, h('a', { href: `#/terminal/${encodeURIComponent(row.device_id)}` }, row.device_id)),
    h('td', {}, row.plate || '—'),
    h('td', {}, row.customer_name || '—'),
    h('td', {}, pill(row.connectivity, label('v_', row.connectivity))),
    timeCell(row.last_seen),
    h('td', { title: fmtTime(row.last_fix_time) }, position),
    h('td', { class: 'num' }, row.power && row.power !== 'on' && row.power !== 'unknown' ? pill(row.power, label('v_', row.power)) : '', ' ', num(row.power_v, 1, ' V')),
    h('td', { class: 'num' }, row.battery_level != null ? num(row.battery_level, 0, ' %') : num(row.battery_v, 2, ' V')),
    h('td', { class: 'num' }, num(row.gsm_signal, 0)),
    h('td', {}, row.faults.map((f) => pill(f.severity, label('f_', f.fault)))));
}

function emptyRow(span) {
  return h('tr', {}, h('td', { colspan: span, class: 'empty' }, t('nothing')));
}

function pageSizeSelect(s) {
  const select = h('select', { onchange: () => { s.limit = Number(select.value); s.offset = 0; refresh(); } },
    [50, 100, 200, 500].map((n) => h('option', { value: n, selected: s.limit === n }, `${n} ${t('per_page')}`)));
  return select;
}

function renderPager(el, page, s) {
  if (!page.items.length && page.offset && page.total) {
    // Rows went away while a later page was shown (alerts cleared, tickets closed): show the last page there is.
    s.offset = Math.floor((page.total - 1) / s.limit) * s.limit;
    refresh();
    return;
  }
  const from = page.total ? page.offset + 1 : 0;
  const to = page.offset + page.items.length;
  el.replaceChildren(
    h('button', { class: 'small', disabled: page.offset === 0, onclick: () => { s.offset = Math.max(0, s.offset - s.limit); refresh(); } }, t('prev')),
    h('span', {}, t('page_of', { from, to, total: page.total })),
    h('button', { class: 'small', disabled: to >= page.total, onclick: () => { s.offset += s.limit; refresh(); } }, t('next')));
}

function debounce(fn, ms) {
  let pending;
  return (...args) => { clearTimeout(pending); pending = setTimeout(() => fn(...args), ms); };
}

// --------------------------------------------------------------------------- alerts view

const alertsView = {
  skeleton() {
    const s = app.alerts;
    const state = h('select', { id: 'alert-state', onchange: () => { s.state = state.value; s.offset = 0; refresh(); } },
      [['open', t('open_states')], ['raised', label('s_', 'raised')], ['acknowledged', label('s_', 'acknowledged')],
        ['cleared', label('s_', 'cleared')], ['', t('view_all')]].map(([v, text]) => h('option', { value: v, selected: s.state === v }, text)));
    const fault = h('select', { id: 'alert-fault', onchange: () => { s.fault = fault.value; s.offset = 0; refresh(); } },
      h('option', { value: '' }, t('view_all')),
      FAULTS.map((f) => h('option', { value: f, selected: s.fault === f }, label('f_', f))));
    return h('section', { id: 'view-alerts' },
      h('h1', {}, t('alerts_title')),
      h('div', { class: 'toolbar' }, h('label', { class: 'muted' }, `${t('state')} `, state),
        h('label', { class: 'muted' }, `${t('fault')} `, fault)),
      h('div', { class: 'tablewrap' }, h('table', { id: 'alert-table' },
        h('thead', {}, h('tr', {}, ['device', 'customer', 'fault', 'severity', 'state', 'raised_at', 'last_seen', 'occurrences', 'acknowledged', 'actions'].map((k) => h('th', {}, t(k))))),
        h('tbody', {}))),
      h('div', { class: 'pager', id: 'pager' }));
  },
  async load(generation) {
    const s = app.alerts;
    const page = await api(`/api/v1/alerts?${query({ state: s.state, fault: s.fault, limit: s.limit, offset: s.offset })}`);
    if (!current(generation) || !$('view-alerts')) return;
    $('alert-table').tBodies[0].replaceChildren(...page.items.map(alertRow));
    if (!page.items.length) $('alert-table').tBodies[0].append(emptyRow(10));
    renderPager($('pager'), page, s);
  },
};

function alertRow(alert) {
  const acknowledged = alert.acknowledged_at
    ? [t('ack_by', { who: alert.acknowledged_by || '—', when: ago(alert.acknowledged_at) }), alert.ack_comment ? h('div', { class: 'muted' }, alert.ack_comment) : null]
    : '—';
  return h('tr', { 'data-alert': alert.id },
    h('td', {}, h('a', { href: `#/terminal/${encodeURIComponent(alert.terminal_id)}` }, alert.terminal_id),
      alert.plate ? h('div', { class: 'muted' }, alert.plate) : null),
    h('td', {}, alert.customer_name || '—'),
    h('td', {}, label('f_', alert.fault)),
    h('td', {}, pill(alert.severity, label('sev_', alert.severity))),
    h('td', {}, pill(alert.state, label('s_', alert.state))),
    timeCell(alert.raised_at),
    timeCell(alert.last_seen),
    h('td', { class: 'num' }, alert.occurrences),
    h('td', { class: 'wrap' }, acknowledged),
    h('td', {}, alert.state === 'raised' && may('acknowledge')
      ? h('button', { class: 'small', onclick: () => acknowledgeDialog(alert) }, t('acknowledge')) : ''));
}

function acknowledgeDialog(alert) {
  const comment = h('textarea', { name: 'comment', rows: 3, maxLength: 2000 });
  formDialog(`${t('acknowledge')}: ${alert.terminal_id} · ${label('f_', alert.fault)}`,
    [h('label', {}, t('comment'), comment)],
    () => api(`/api/v1/alerts/${alert.id}/acknowledge`, { method: 'POST', body: { comment: comment.value || null } }));
}

// --------------------------------------------------------------------------- tickets view

const ticketsView = {
  skeleton() {
    const s = app.tickets;
    const state = h('select', { id: 'ticket-state', onchange: () => { s.state = state.value; s.offset = 0; refresh(); } },
      h('option', { value: 'open', selected: s.state === 'open' }, t('open_tickets')),
      // The API reads state=open as every state before resolved: the single state "open" cannot be asked for.
      TICKET_STATES.filter((v) => v !== 'open').map((v) => h('option', { value: v, selected: s.state === v }, label('s_', v))),
      h('option', { value: '', selected: s.state === '' }, t('view_all')));
    const priority = h('select', { onchange: () => { s.priority = priority.value; s.offset = 0; refresh(); } },
      h('option', { value: '' }, t('view_all')),
      PRIORITIES.map((v) => h('option', { value: v, selected: s.priority === v }, label('p_', v))));
    const plate = h('input', {
      type: 'search', id: 'ticket-plate', placeholder: t('plate_search'), value: s.plate,
      oninput: debounce(() => { s.plate = plate.value.trim(); s.offset = 0; refresh(); }, 300),
    });
    return h('section', { id: 'view-tickets' },
      h('h1', {}, t('tickets_title')),
      h('div', { class: 'toolbar' },
        plate,
        h('label', { class: 'muted' }, `${t('state')} `, state),
        h('label', { class: 'muted' }, `${t('priority')} `, priority),
        h('span', { class: 'spacer' }),
        may('openTicket') ? h('button', { class: 'primary', id: 'open-ticket', onclick: () => openTicketDialog('') }, t('open_ticket')) : null),
      h('div', { class: 'tablewrap' }, ticketTable('ticket-table')),
      h('div', { class: 'pager', id: 'pager' }));
  },
  async load(generation) {
    const s = app.tickets;
    const page = await api(`/api/v1/tickets?${query({ state: s.state, priority: s.priority, plate: s.plate, limit: s.limit, offset: s.offset })}`);
    if (!current(generation) || !$('view-tickets')) return;
    fillTickets($('ticket-table'), page.items);
    renderPager($('pager'), page, s);
  },
};

const TICKET_COLUMNS = ['number', 'device', 'customer', 'fault', 'priority', 'state', 'response_due', 'repair_due', 'warranty', 'actions'];

function ticketTable(id) {
  return h('table', { id }, h('thead', {}, h('tr', {}, TICKET_COLUMNS.map((k) => h('th', {}, t(k))))), h('tbody', {}));
}
function fillTickets(table, items) {
  table.tBodies[0].replaceChildren(...items.map(ticketRow));
  if (!items.length) table.tBodies[0].append(emptyRow(TICKET_COLUMNS.length));
}

function dueCell(due, overdue) {
  return h('td', { class: overdue ? 'overdue' : '', title: fmtTime(due) },
    fmtShort(due), overdue ? h('div', {}, h('span', { class: 'pill bad' }, t('overdue'))) : '');
}
const shorten = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

function ticketRow(ticket) {
  const warranty = ticket.in_warranty == null ? '—'
    : [pill(ticket.in_warranty ? 'ok' : 'cut', ticket.in_warranty ? t('in_warranty') : t('out_of_warranty')),
      ticket.warranty_until ? h('div', { class: 'muted' }, t('until', { date: fmtDate(ticket.warranty_until) })) : null,
      ticket.purchased_on ? h('div', { class: 'muted' }, t('purchased', { date: fmtDate(ticket.purchased_on) })) : null];
  const moves = app.me && STAFF.includes(app.me.role)
    ? ticket.allowed_transitions.filter((to) => (TRANSITION_ROLES[to] || STAFF).includes(app.me.role)) : [];
  return h('tr', { 'data-ticket': ticket.id, class: ticket.response_overdue || ticket.repair_overdue ? 'late' : '' },
    h('td', {}, ticket.number, h('div', { class: 'muted', title: fmtTime(ticket.created_at) }, ago(ticket.created_at))),
    h('td', {}, h('a', { href: `#/terminal/${encodeURIComponent(ticket.terminal_id)}` }, ticket.terminal_id),
      h('div', { class: 'muted' }, ticket.vehicle_plate || '—')),
    h('td', {}, ticket.customer_name || '—'),
    h('td', { class: 'wrap' }, label('f_', ticket.fault), ticket.verification ? h('div', {}, pill('low', t('to_verify'))) : null,
      ticket.symptoms ? h('div', { class: 'muted', title: ticket.symptoms }, shorten(ticket.symptoms, 60)) : null),
    h('td', {}, pill(ticket.priority, label('p_', ticket.priority))),
    h('td', {}, pill(ticket.state, label('s_', ticket.state))),
    dueCell(ticket.response_due, ticket.response_overdue && !ticket.responded_at),
    dueCell(ticket.repair_due, ticket.repair_overdue && !ticket.resolved_at),
    h('td', {}, warranty),
    h('td', {}, moves.map((to) => h('button', { class: 'small', 'data-to': to, onclick: () => transitionDialog(ticket, to) }, `→ ${label('s_', to)}`))));
}

function transitionDialog(ticket, to) {
  const comment = h('textarea', { name: 'comment', rows: 3, maxLength: 2000 });
  formDialog(t('move_to', { number: ticket.number, state: label('s_', to) }),
    [h('label', {}, t('comment'), comment)],
    () => api(`/api/v1/tickets/${ticket.id}/transitions`, { method: 'POST', body: { to, comment: comment.value || null } }));
}

function openTicketDialog(terminalId) {
  const terminal = h('input', { name: 'terminal_id', value: terminalId, maxLength: 64 });
  const plate = h('input', { name: 'plate', maxLength: 40 });  // or the vehicle, as a caller names it
  const fault = h('select', { name: 'fault' }, h('option', { value: '' }, label('f_', 'reported')),
    FAULTS.map((f) => h('option', { value: f }, label('f_', f))));
  const priority = h('select', { name: 'priority' }, PRIORITIES.map((p) => h('option', { value: p, selected: p === 'normal' }, label('p_', p))));
  const symptoms = h('textarea', { name: 'symptoms', rows: 3, maxLength: 4000 });
  const contact = h('input', { name: 'contact', maxLength: 200 });
  const phone = h('input', { name: 'phone', maxLength: 40 });
  formDialog(t('open_ticket'), [
    h('label', {}, t('device'), terminal), h('label', {}, t('or_plate'), plate),
    h('label', {}, t('fault'), fault), h('label', {}, t('priority'), priority),
    h('label', {}, t('symptoms'), symptoms), h('label', {}, t('contact'), contact), h('label', {}, t('phone'), phone),
  ], () => api('/api/v1/tickets', {
    method: 'POST',
    body: {
      terminal_id: terminal.value.trim() || null, plate: plate.value.trim() || null,
      fault: fault.value || null, priority: priority.value,
      symptoms: symptoms.value || null, contact: contact.value || null, phone: phone.value || null,
    },
  }));
}

// One dialog for every form: the table behind it may keep refreshing while it is open.
function formDialog(title, fields, submit) {
  const dialog = $('dialog');
  const error = h('div', { class: 'error' });
  const save = h('button', { class: 'primary', type: 'submit' }, t('save'));
  dialog.replaceChildren(h('form', {
    method: 'dialog',
    onsubmit: async (event) => {
      event.preventDefault();
      save.disabled = true;
      try {
        await submit();
        dialog.close();
        refresh();
      } catch (e) {
        if (!(e instanceof SignedOut)) error.textContent = e.message;
      } finally {
        save.disabled = false;
      }
    },
  }, h('h1', {}, title), fields, error,
  h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => dialog.close() }, t('cancel')), save)));
  dialog.showModal();
}

// --------------------------------------------------------------------------- quarantine view

const quarantineView = {
  skeleton() {
    const s = app.quarantine;
    const status = h('select', { onchange: () => { s.status = status.value; refresh(); } },
      h('option', { value: '' }, t('view_all')),
      ['new', 'claimed', 'assigned', 'dismissed'].map((v) => h('option', { value: v, selected: s.status === v }, label('s_', v))));
    return h('section', { id: 'view-quarantine' },
      h('h1', {}, t('quarantine_title')),
      h('div', { class: 'toolbar' }, h('label', { class: 'muted' }, `${t('status')} `, status)),
      h('div', { class: 'tablewrap' }, h('table', { id: 'quarantine-table' },
        h('thead', {}, h('tr', {}, ['device', 'protocol', 'transport', 'remote', 'first_seen', 'last_seen', 'sightings', 'status', 'claimed_by', 'actions'].map((k) => h('th', {}, t(k))))),
        h('tbody', {}))));
  },
  async load(generation) {
    const rows = await api(`/api/v1/gateway/quarantine?${query({ status: app.quarantine.status })}`);
    if (!current(generation) || !$('view-quarantine')) return;
    const body = $('quarantine-table').tBodies[0];
    body.replaceChildren(...rows.map((row) => h('tr', { 'data-quarantine': row.device_id },
      h('td', {}, row.device_id), h('td', {}, row.protocol), h('td', {}, row.transport || '—'),
      h('td', {}, row.remote_address || '—'), timeCell(row.first_seen), timeCell(row.last_seen),
      h('td', { class: 'num' }, row.sightings), h('td', {}, pill(row.status, label('s_', row.status))),
      h('td', {}, row.claimed_by || '—'),
      h('td', {}, row.status === 'new' && may('claim') ? h('button', { class: 'small', onclick: () => claimDialog(row) }, t('claim')) : ''))));
    if (!rows.length) body.append(emptyRow(10));
  },
};

function claimDialog(row) {
  const note = h('textarea', { name: 'note', rows: 3, maxLength: 2000 });
  formDialog(`${t('claim')}: ${row.device_id}`, [h('label', {}, t('note'), note)],
    () => api(`/api/v1/gateway/quarantine/${encodeURIComponent(row.device_id)}/claim`, { method: 'POST', body: { note: note.value || null } }));
}

// --------------------------------------------------------------------------- reports view

// The monthly or quarterly ticket report (rules 12 and 13). Fetched once per period and zone
// (the poll only redraws it); "Show" fetches it again.
const reportsView = {
  skeleton() {
    if (!may('reports')) {
      return h('section', { id: 'view-reports' }, h('h1', {}, t('reports_title')),
        h('p', { class: 'panel', id: 'report-refused' }, t('not_allowed', { role: label('role_', app.me.role) })));
    }
    const s = app.reports;
    if (app.route.arg) { // a shared link: #/reports/2026-Q3/Asia/Shanghai
      const [wanted, ...zone] = app.route.arg.split('/');
      s.period = wanted;
      if (zone.length) s.tz = zone.join('/');
    }
    if (!s.tz) s.tz = browserZone();
    if (!s.period) s.period = lastPeriod('month', s.tz);
    const period = h('input', {
      id: 'report-period', name: 'period', value: s.period, list: 'report-periods', maxLength: 20, size: 10, title: t('period_help'), required: true,
      oninput: () => { kind.value = periodKind(period.value); },
    });
    const zone = h('input', { id: 'report-tz', name: 'tz', value: s.tz, list: 'report-zones', maxLength: 64, size: 18, required: true });
    const kind = h('select', { id: 'report-kind', onchange: () => { period.value = lastPeriod(kind.value, zone.value.trim()); } },
      ['month', 'quarter'].map((k) => h('option', { value: k, selected: periodKind(s.period) === k }, t(k))));
    const show = (event) => {
      event.preventDefault();
      s.period = period.value.trim();
      s.tz = zone.value.trim();
      s.shown = null;
      const link = `#/reports/${encodeURIComponent(s.period)}/${encodeURIComponent(s.tz)}`;
      if (location.hash === link) refresh(); else location.hash = link; // the address bar can be shared
    };
    return h('section', { id: 'view-reports' },
      h('h1', {}, t('reports_title')),
      h('form', { class: 'toolbar', id: 'report-form', onsubmit: show },
        h('label', { class: 'muted' }, `${t('period')} `, kind, ' ', period),
        h('label', { class: 'muted' }, `${t('zone')} `, zone),
        h('button', { class: 'primary', type: 'submit' }, t('show_report')),
        h('span', { class: 'muted' }, t('period_help')),
        h('datalist', { id: 'report-periods' }, recentPeriods(s.tz).map((p) => h('option', { value: p }))),
        h('datalist', { id: 'report-zones' }, knownZones().map((z) => h('option', { value: z })))),
      h('div', { class: 'error', id: 'report-error', role: 'alert' }),
      h('div', { id: 'report' }));
  },
  async load(generation) {
    if (!may('reports')) return;
    const s = app.reports;
    const key = `${s.period}|${s.tz}`;
    if (!s.shown || s.shown.key !== key) {
      let shown;
      try {
        shown = { key, report: await api(`/api/v1/reports/tickets?${query({ period: s.period, tz: s.tz })}`) };
      } catch (error) {
        if (!(error instanceof ApiError)) throw error; // an outage: the banner says so, the poll retries
        shown = { key, error: error.message };
      }
      if (!current(generation)) return;
      s.fetches += 1;
      s.shown = { ...shown, fetch: s.fetches };
    }
    const el = $('report');
    if (!el || el.dataset.fetch === String(s.shown.fetch)) return; // drawn already: keep a selection intact
    el.dataset.fetch = s.shown.fetch;
    $('report-error').textContent = s.shown.error ? `${t('error')}: ${s.shown.error}` : '';
    el.replaceChildren(...(s.shown.report ? reportTables(s.shown.report) : []));
  },
};

function browserZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}
function knownZones() {
  return typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : ['UTC', 'Asia/Shanghai'];
}
const periodKind = (text) => (/q/i.test(text) ? 'quarter' : 'month');

// This month and quarter as the zone reckons them now ([year, month 1-12]).
function todayIn(tz) {
  let parts;
  try {
    parts = new Intl.DateTimeFormat('en-US', { timeZone: tz || 'UTC', year: 'numeric', month: 'numeric' }).formatToParts(new Date());
  } catch (e) { // an unknown zone: the API will say so when asked
    parts = new Intl.DateTimeFormat('en-US', { year: 'numeric', month: 'numeric' }).formatToParts(new Date());
  }
  const part = (type) => Number(parts.find((p) => p.type === type).value);
  return [part('year'), part('month')];
}
// The last whole month or quarter, as the API names it (2026-10, 2026-Q3).
function lastPeriod(kind, tz) {
  const [year, month] = todayIn(tz);
  if (kind === 'quarter') {
    const quarter = Math.ceil(month / 3) - 1;
    return quarter ? `${year}-Q${quarter}` : `${year - 1}-Q4`;
  }
  return month > 1 ? `${year}-${String(month - 1).padStart(2, '0')}` : `${year - 1}-12`;
}
// This month and the twelve before it, this quarter and the four before it: the choices offered.
function recentPeriods(tz) {
  const [year, month] = todayIn(tz);
  const months = Array.from({ length: 13 }, (_, back) => {
    const n = year * 12 + month - 1 - back;
    return `${Math.floor(n / 12)}-${String((n % 12) + 1).padStart(2, '0')}`;
  });
  const quarters = Array.from({ length: 5 }, (_, back) => {
    const n = year * 4 + Math.ceil(month / 3) - 1 - back;
    return `${Math.floor(n / 4)}-Q${(n % 4) + 1}`;
  });
  return [...months, ...quarters];
}

const fmtHours = (value) => num(value, 1);
// The period's bounds as its own zone reads them (midnight on the 1st), not the browser's.
const fmtInZone = (iso, tz) => new Intl.DateTimeFormat(app.lang === 'zh' ? 'zh-CN' : 'en-GB', {
  timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
}).format(new Date(iso));
const percentOf = (n, total) => (total ? `${((100 * n) / total).toFixed(0)} %` : '—');

function reportTable(id, headers, rows) {
  return h('div', { class: 'tablewrap' }, h('table', { id, class: 'report' },
    h('thead', {}, h('tr', {}, headers.map((k, i) => h('th', { class: i ? 'num' : '' }, t(k))))),
    h('tbody', {}, rows.length ? rows.map(([key, ...cells]) => h('tr', { 'data-row': key },
      cells.map((cell, i) => h('td', { class: i ? 'num' : '' }, cell)))) : emptyRow(headers.length))));
}
// A {name: count} object as rows of label, count and share of the period's tickets.
function countRows(counts, total, text) {
  return Object.entries(counts).map(([name, n]) => [name, text(name), n, percentOf(n, total)]);
}

function reportTables(report) {
  const k = report.tickets;
  const span = report.period;
  const sla = (kind) => {
    const v = report.sla[kind];
    return [kind, t(`sla_${kind}`), v.met, v.missed, v.pending, v.met_percent == null ? '—' : `${v.met_percent.toFixed(1)} %`];
  };
  const hours = (kind) => {
    const v = report.hours[kind];
    return [kind, t(`sla_${kind}`), v.count, fmtHours(v.median), fmtHours(v.p90), fmtHours(v.mean)];
  };
  const models = report.by_model.map((m) => [m.model, m.model, m.tickets, m.terminals ?? '—', num(m.tickets_per_100_terminals, 1),
    h('span', { class: 'wrap' }, Object.entries(m.faults).map(([f, n]) => pill('', `${label('f_', f)} ${n}`)))]);
  const w = report.warranty;
  return [
    h('p', { class: 'muted', id: 'report-span' },
      t('report_span', { label: span.label, tz: span.tz, start: fmtInZone(span.start, span.tz), end: fmtInZone(span.end, span.tz) }), ' · ',
      t('generated', { when: fmtTime(report.generated_at) })),
    h('div', { class: 'reportgrid' },
      h('div', {}, h('h2', {}, t('volumes')), reportTable('report-volumes', ['', 'tickets_n'], [
        ['opened', t('opened'), k.opened], ['reopened', t('reopened'), k.reopened], ['cancelled', t('cancelled_n'), k.cancelled],
        ['resolved_in_period', t('resolved_in_period'), k.resolved_in_period],
        ['closed_in_period', t('closed_in_period'), k.closed_in_period], ['open_at_end', t('open_at_end'), k.open_at_end]])),
      h('div', {}, h('h2', {}, t('warranty_title')), reportTable('report-warranty', ['warranty', 'tickets_n', 'share'], [
        ['in', t('w_in'), w.in, percentOf(w.in, k.opened)], ['out', t('w_out'), w.out, percentOf(w.out, k.opened)],
        ['unknown', t('w_unknown'), w.unknown, percentOf(w.unknown, k.opened)]]))),
    h('h2', {}, t('sla_title')),
    reportTable('report-sla', ['sla_kind', 'met', 'missed', 'pending', 'met_percent'], [sla('response'), sla('repair')]),
    h('h2', {}, t('hours_title')),
    reportTable('report-hours', ['sla_kind', 'counted', 'median', 'p90', 'mean'], [hours('response'), hours('repair')]),
    h('div', { class: 'reportgrid' },
      h('div', {}, h('h2', {}, t('by_source')),
        reportTable('report-source', ['source', 'tickets_n', 'share'], countRows(k.by_source, k.opened, (v) => label('src_', v)))),
      h('div', {}, h('h2', {}, t('by_priority')),
        reportTable('report-priority', ['priority', 'tickets_n', 'share'], countRows(k.by_priority, k.opened, (v) => label('p_', v))))),
    h('h2', {}, t('by_fault')),
    reportTable('report-fault', ['fault', 'tickets_n', 'share'], countRows(k.by_fault, k.opened, (v) => label('f_', v))),
    h('h2', {}, t('by_model')),
    reportTable('report-model', ['model', 'tickets_n', 'terminals_n', 'per_100', 'model_faults'], models),
  ];
}

// --------------------------------------------------------------------------- terminal detail

const terminalView = {
  skeleton() {
    const id = app.route.arg || '';
    return h('section', { id: 'view-terminal' },
      h('div', { class: 'toolbar' }, h('a', { href: '#/terminals' }, t('back')), h('span', { class: 'spacer' }),
        may('openTicket') ? h('button', { class: 'primary', onclick: () => openTicketDialog(id) }, t('open_ticket')) : null),
      h('h1', { id: 'terminal-title' }, t('terminal_title', { id })),
      h('p', { class: 'panel error', id: 'terminal-missing', hidden: true }),
      h('div', { class: 'grid2', id: 'terminal-body' },
        h('div', {},
          h('div', { class: 'panel', id: 'registry-panel' }, t('loading')),
          h('h2', {}, t('health')), h('div', { class: 'tablewrap' }, h('table', { id: 'health-table' })),
          h('h2', {}, t('open_alerts')), h('div', { id: 'terminal-alerts' })),
        h('div', {},
          h('h2', {}, t('track'), ' ', trackRangeSelect()), h('div', { id: 'track' }),
          h('h2', {}, t('tickets_of')), h('div', { class: 'tablewrap' }, ticketTable('terminal-tickets')),
          h('h2', {}, t('history')), h('div', { class: 'tablewrap', id: 'history' }),
          h('h2', {}, t('swaps')), h('div', { class: 'tablewrap', id: 'swaps' }))));
  },
  async load(generation) {
    const id = encodeURIComponent(app.route.arg || '');
    const soft = (promise) => promise.catch((error) => { if (error instanceof SignedOut) throw error; return null; });
    // Not found (a mistyped link, another customer's terminal) is said in place, not left "Loading…".
    const known = (promise) => promise.catch((error) => { if (error instanceof ApiError) return { missing: error.message }; throw error; });
    const [registry, health, track, history, warranty, tickets] = await Promise.all([
      known(api(`/api/v1/terminals/${id}`)),
      soft(api(`/api/v1/terminals/${id}/health`)),
      soft(loadTrack(id)),
      soft(api(`/api/v1/terminals/${id}/history`)),
      soft(api(`/api/v1/terminals/${id}/warranty`)),
      soft(api(`/api/v1/tickets?terminal_id=${id}&limit=50`)),
    ]);
    if (!current(generation) || !$('view-terminal')) return;
    $('terminal-missing').hidden = !registry.missing;
    $('terminal-missing').textContent = registry.missing ? `${t('error')}: ${registry.missing}` : '';
    $('terminal-body').hidden = Boolean(registry.missing);
    if (registry.missing) return;
    renderRegistry(registry, warranty);
    renderHealth(health);
    $('track').replaceChildren(trackSvg(track ? track.points : [], Boolean(track && track.next_cursor)));
    fillTickets($('terminal-tickets'), tickets ? tickets.items : []);
    renderHistory(history);
    renderSwaps(history);
  },
};

async function loadTrack(id) {
  const key = `${id}/${app.trackHours}`;
  if (app.track && app.track.key === key && Date.now() - app.track.at < TRACK_MS) return app.track.page;
  const start = new Date(Date.now() - app.trackHours * 3600e3).toISOString();
  const page = await api(`/api/v1/terminals/${id}/track?${query({ start, page_size: TRACK_POINTS })}`);
  app.track = { key, at: Date.now(), page };
  return page;
}

function trackRangeSelect() {
  const select = h('select', { id: 'track-range', onchange: () => { app.trackHours = Number(select.value); refresh(); } },
    [1, 6, 24, 72, 168].map((n) => h('option', { value: n, selected: app.trackHours === n }, t('last_hours', { n }))));
  return select;
}

function renderRegistry(terminal, warranty) {
  const facts = [
    [t('plate'), terminal.plate || '—'], [t('model'), terminal.model_name || '—'],
    [t('serial'), terminal.serial_number || '—'], [t('sim'), terminal.iccid || '—'],
    [t('firmware'), terminal.firmware || '—'], [t('registry'), label('r_', terminal.status)],
    [t('enabled'), terminal.enabled ? t('yes') : t('no')],
  ];
  if (warranty) {
    facts.push([t('warranty'), [pill(warranty.in_warranty ? 'ok' : 'cut', warranty.in_warranty ? t('in_warranty') : t('out_of_warranty')),
      ' ', warranty.until ? t('until', { date: fmtDate(warranty.until) }) : '', h('div', { class: 'muted' }, warranty.reason)]]);
  }
  $('registry-panel').replaceChildren(h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
}

function renderHealth(health) {
  const table = $('health-table');
  if (!health) { table.replaceChildren(emptyRow(3)); return; }
  const detail = {
    connectivity: health.last_seen ? `${t('last_seen')}: ${fmtTime(health.last_seen)}` : '',
    gnss: health.last_lat != null ? `${health.last_lat.toFixed(5)}, ${health.last_lon.toFixed(5)}` : '',
    power: num(health.power_v, 1, ' V'), battery: health.battery_level != null ? num(health.battery_level, 0, ' %') : num(health.battery_v, 2, ' V'),
    gsm: num(health.gsm_signal, 0), sim: health.iccid_reported || '',
    clock: health.clock_drift_s != null ? `${Math.round(health.clock_drift_s) || 0} s` : '',
    data_quality: `${health.decode_errors_1h || 0} / ${health.checksum_errors_1h || 0}`,
  };
  table.replaceChildren(
    h('thead', {}, h('tr', {}, h('th', {}, t('dimension')), h('th', {}, t('value')), h('th', {}, t('since')))),
    h('tbody', {}, DIMENSIONS.map((d) => h('tr', { 'data-dimension': d },
      h('td', {}, t(`dim_${d}`)),
      h('td', {}, pill(health[d], label('v_', health[d])), ' ', h('span', { class: 'muted' }, detail[d] === '—' ? '' : detail[d])),
      h('td', { title: fmtTime(health[`${d}_since`]) }, health[`${d}_since`] ? ago(health[`${d}_since`]) : '—')))));
  const open = health.open_alerts || [];
  $('terminal-alerts').replaceChildren(open.length
    ? h('div', {}, open.map((a) => h('div', { 'data-alert': a.id }, pill(a.severity, label('f_', a.fault)), ' ', pill(a.state, label('s_', a.state)), ' ',
      h('span', { class: 'muted', title: fmtTime(a.raised_at) }, ago(a.raised_at)), ' ',
      a.state === 'raised' && may('acknowledge') ? h('button', { class: 'small', onclick: () => acknowledgeDialog(a) }, t('acknowledge')) : null)))
    : h('p', { class: 'muted' }, t('nothing')));
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const child of children) el.append(child);
  return el;
}

// The track on a plain equirectangular projection scaled to fit: no map tiles offline.
function trackSvg(points, cut) {
  if (!points.length) return h('p', { class: 'muted', id: 'no-track' }, t('no_track'));
  const width = 640;
  const height = 400;
  const pad = 20;
  const meanLat = points.reduce((sum, p) => sum + p.lat, 0) / points.length;
  const k = Math.cos((meanLat * Math.PI) / 180);
  const xs = points.map((p) => p.lon * k);
  const ys = points.map((p) => p.lat);
  const [minX, maxX, minY, maxY] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const span = Math.max(maxX - minX, maxY - minY);
  const scale = Math.min((width - 2 * pad) / Math.max(maxX - minX, 1e-6), (height - 2 * pad) / Math.max(maxY - minY, 1e-6));
  const offX = (width - (maxX - minX) * scale) / 2;
  const offY = (height - (maxY - minY) * scale) / 2;
  const at = (i) => [offX + (xs[i] - minX) * scale, height - offY - (ys[i] - minY) * scale];
  const coords = points.map((_, i) => at(i).map((v) => v.toFixed(1)).join(',')).join(' ');
  const [sx, sy] = at(0);
  const [ex, ey] = at(points.length - 1);
  const last = points[points.length - 1];
  const km = (span * 111.32).toFixed(span * 111.32 < 10 ? 2 : 0);
  return h('figure', { class: 'trackfig' },
    svg('svg', { class: 'track', id: 'track-svg', viewBox: `0 0 ${width} ${height}`, role: 'img' },
      svg('title', {}, `${points.length} fixes`),
      svg('polyline', { points: coords, fill: 'none', stroke: '#4ea1ff', 'stroke-width': '2', 'stroke-linejoin': 'round', 'stroke-linecap': 'round' }),
      svg('circle', { cx: sx, cy: sy, r: '5', fill: '#3fbf6f' }),
      svg('circle', { cx: ex, cy: ey, r: '6', fill: '#ef5350', stroke: '#fff', 'stroke-width': '1.5' })),
    h('figcaption', { class: 'muted' }, points.length === 1 ? t('track_point') : t('track_points', { n: points.length, km }), cut ? ` (${t('track_cut')})` : '', ' · ',
      `${t('last_position')}: ${last.lat.toFixed(5)}, ${last.lon.toFixed(5)} (${fmtTime(last.fix_time)})`));
}

function renderHistory(history) {
  const el = $('history');
  if (!history || !history.installations.length) { el.replaceChildren(h('p', { class: 'muted empty' }, t('nothing'))); return; }
  el.replaceChildren(h('table', {},
    h('thead', {}, h('tr', {}, ['plate', 'sim', 'from', 'to', 'installed_by', 'end_reason'].map((k) => h('th', {}, t(k))))),
    h('tbody', {}, history.installations.map((i) => h('tr', {},
      h('td', {}, i.plate), h('td', {}, i.iccid || '—'), h('td', {}, fmtTime(i.valid_from)), h('td', {}, i.valid_to ? fmtTime(i.valid_to) : '—'),
      h('td', {}, i.installed_by || '—'), h('td', {}, i.end_reason || '—'))))));
}

// Terminal and SIM swaps (rules 5 and 6): which went out, which came in, why, the symptom.
function renderSwaps(history) {
  const el = $('swaps');
  if (!history || !history.swaps.length) { el.replaceChildren(h('p', { class: 'muted empty' }, t('nothing'))); return; }
  const change = (s) => (s.kind === 'sim' ? [s.old_iccid, s.new_iccid] : [s.old_device_id, s.new_device_id])
    .map((v) => v || '—').join(' → ');
  el.replaceChildren(h('table', {},
    h('thead', {}, h('tr', {}, ['when', 'swap_kind', 'old_new', 'plate', 'reason', 'symptoms', 'performed_by'].map((k) => h('th', {}, t(k))))),
    h('tbody', {}, history.swaps.map((s) => h('tr', { 'data-swap': s.id },
      h('td', {}, fmtTime(s.performed_at)), h('td', {}, label('k_', s.kind)), h('td', {}, change(s)),
      h('td', {}, s.plate || '—'), h('td', {}, s.reason), h('td', {}, s.symptom || '—'), h('td', {}, s.performed_by))))));
}

const VIEWS = {
  terminals: terminalsView, alerts: alertsView, tickets: ticketsView, quarantine: quarantineView, reports: reportsView,
  terminal: terminalView,
};

start();
