//! Topic: is this an undisclosed vulnerability, or a bug report, a question, a scanner dump?
//!
//! Words alone decide nothing: real reports say "crash" and "NullPointerException", real
//! bug reports say "SSL" and "password". So every rule here is *evidence* with a weight, on
//! one of four sides, and the sides are compared:
//!
//! - **report**: attacker framing and impact, proof-of-concept material, weakness
//!   vocabulary, disclosure language;
//! - **question**: question shapes ("how do I", "is X affected by CVE-…?", questionnaires,
//!   bounty enquiries);
//! - **bug**: functional-defect shapes (expected vs actual, "after upgrading", stack traces);
//! - **scanner**: tool banners, tables of CVE ids and severities, many ids and no narrative.
//!
//! A message is off-topic only when an off-topic side reaches [`MIN_OFFTOPIC`] *and* beats the
//! report side by [`MARGIN`]. Anything less is a report: turning a real report away is the
//! worst mistake this program can make. For scanner dumps the report side counts only
//! *narrative* evidence (attacker framing, PoC, disclosure, first-person discovery), because a
//! dump is full of weakness words that describe its CVEs, not a finding.
//!
//! All weights live in [`RULES`] and the constants below; nothing else in the crate scores.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;
use regex_automata::{Anchored, Input, meta, util::syntax};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Hir, HirKind};

use super::{Reason, Signal};
use crate::parse::Inbound;

/// An off-topic side needs at least this score to reject.
pub const MIN_OFFTOPIC: i32 = 4;
/// ...and must beat the report side by this much.
pub const MARGIN: i32 = 2;

/// Which way a rule points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Evidence of a vulnerability report.
    Report,
    /// Evidence of a functional bug report.
    Bug,
    /// Evidence of a question or enquiry.
    Question,
    /// Evidence of raw scanner output.
    Scanner,
}

/// Where a rule looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Subject only.
    Subject,
    /// Body only.
    Body,
    /// Either.
    Any,
}

/// One weighted rule. Patterns see lowercased text.
pub struct Rule {
    /// Name shown in signals.
    pub name: &'static str,
    /// Which side it supports.
    pub side: Side,
    /// How much.
    pub weight: i32,
    /// Where it looks.
    pub scope: Scope,
    /// Report-side rules that are narrative (count against scanner dumps too).
    pub narrative: bool,
    /// The pattern (regex syntax, lowercase).
    pub pattern: &'static str,
}

const fn r(name: &'static str, side: Side, weight: i32, scope: Scope, narrative: bool, pattern: &'static str) -> Rule {
    Rule {
        name,
        side,
        weight,
        scope,
        narrative,
        pattern,
    }
}

use Scope::{Any, Body, Subject};
use Side::{Bug, Question, Report, Scanner};

/// Every pattern rule and its weight: the one place to tune the topic classifier.
#[rustfmt::skip]
pub const RULES: &[Rule] = &[
    // --- report: attacker framing and impact -------------------------------------------
    r("attacker_framing", Report, 3, Body, true,
      r"\b(?:attackers?|adversar(?:y|ies)|threat actors?|malicious (?:users?|actors?|clients?|part(?:y|ies)|websites?|sites?|pages?|servers?|inputs?|requests?|payloads?|files?|archives?|documents?|xml|scripts?|tenants?|plugins?|links?|urls?))\b"),
    r("unauthenticated_actor", Report, 2, Body, true,
      r"\b(?:unauthenticated|unauthori[sz]ed|anonymous|low[- ]privileged?|non-admin|remote) (?:users?|attackers?|clients?|access|requests?|callers?|visitors?|parties)\b"),
    r("without_authentication", Report, 2, Body, true,
      r"\bwithout (?:any )?(?:authentication|authori[sz]ation|credentials|logging in|a valid session|permission|being authenticated)\b|\bpre-?auth(?:entication)?\b"),
    r("bypass", Report, 2, Any, false,
      r"\bbypass(?:es|ed|ing)?\b|\bcircumvent"),
    r("arbitrary", Report, 3, Any, false,
      r"\barbitrary (?:code|commands?|files?|sql|java|javascript|script|html|class(?:es)?|objects?|urls?|hosts?|paths?|director(?:y|ies)|headers?|methods?|expressions?|ognl|read|write|file (?:read|write|upload|deletion))\b"),
    r("code_execution", Report, 3, Any, false,
      r"\b(?:remote code execution|rce|(?:code|command) execution|execute (?:arbitrary|system|os|shell) commands?)\b"),
    r("privilege_escalation", Report, 3, Any, false,
      r"\bprivilege escalation\b|\bescalat(?:e|es|ed|ing|ion) (?:of )?(?:their |his |her |the )?privileges?\b|\belevation of privilege|\bgain (?:admin|administrator|root|elevated)\b"),
    r("data_exposure", Report, 2, Any, false,
      r"\b(?:read|access|view|download|obtain|steal|leak|disclose|exfiltrate)s? (?:other users'?|another user'?s|sensitive|confidential|private|arbitrary|any user'?s?|the contents of)\b|\b(?:information|data|credential|memory) (?:disclosure|leak(?:age)?|exposure)\b|\bsensitive (?:information|data)\b"),
    r("takeover", Report, 3, Any, false,
      r"\b(?:account takeover|session (?:hijack(?:ing)?|fixation)|impersonat(?:e|es|ion)|cache poisoning|credential theft)\b"),
    r("denial_of_service", Report, 1, Any, false,
      r"\b(?:denial[- ]of[- ]service|dos|resource exhaustion|uncontrolled (?:resource|memory|recursion)|cpu exhaustion|memory exhaustion)\b"),
    r("crafted_input", Report, 2, Body, true,
      r"\b(?:specially[- ]|maliciously[- ])?crafted\b"),
    r("malformed_input", Report, 1, Body, false,
      r"\bmalformed (?:requests?|inputs?|packets?|headers?|payloads?|files?|archives?|messages?)\b"),
    // --- report: proof-of-concept material -----------------------------------------------
    r("proof_of_concept", Report, 3, Any, true,
      r"\b(?:proof[- ]of[- ]concept|poc)\b"),
    r("exploit", Report, 2, Any, true,
      r"\bexploit(?:s|ed|ing|ation|able)?\b"),
    r("payload", Report, 2, Body, true, r"\bpayloads?\b"),
    r("http_request", Report, 2, Body, true,
      r"(?m)^[ \t]*(?:get|post|put|delete|patch|head|options|trace) /\S* http/[12]"),
    r("command_line", Report, 2, Body, true,
      r"(?m)^\s*(?:\$ |# )?(?:curl|wget|nc|ncat|netcat|python3?|perl|ruby|java -jar|openssl s_client|telnet)\s"),
    r("script_payload", Report, 2, Body, true,
      r"<script|javascript:|onerror\s*=|onload\s*=|alert\(|document\.cookie"),
    r("traversal_payload", Report, 2, Body, true,
      r"\.\./|\.\.\\|%2e%2e|\.\.%2f|%252e|%c0%ae|\.\.;/"),
    r("lookup_payload", Report, 3, Body, true,
      r"\$\{(?:jndi|env|sys|script|dns|url|ctx|main|lower|upper|base64)?:"),
    r("sql_payload", Report, 2, Body, true,
      r"'\s*or\s*'?1'?\s*=\s*'?1|\bunion(?:\s+all)?\s+select\b|\bsleep\(\d+\)|\bwaitfor delay\b"),
    r("gadget_chain", Report, 3, Body, true,
      r"\b(?:ysoserial|gadget chains?|marshalsec|commonscollections\d|rogue (?:jndi|ldap|rmi) server)\b"),
    r("sensitive_target", Report, 2, Body, true,
      r"/etc/passwd|/etc/shadow|win\.ini|169\.254\.169\.254|file:///|\bid_rsa\b|uid=0\(root\)"),
    // --- report: weakness vocabulary -----------------------------------------------------
    r("cwe", Report, 2, Any, false, r"\bcwe-\d+"),
    r("cvss", Report, 2, Body, false, r"\bcvss"),
    r("injection", Report, 2, Any, false,
      r"\b(?:sql|ldap|xpath|command|os command|code|template|expression language|el|ognl|header|crlf|log|html|xml|nosql|jndi|script|server[- ]side template|spel|mvel)[- ]injection\b|\binjection (?:vulnerability|flaw|attack)\b|\bsqli\b|\bssti\b"),
    r("path_traversal", Report, 2, Any, false,
      r"\b(?:path|directory) traversal\b|\bzip[- ]?slip\b|\blocal file inclusion\b|\blfi\b"),
    r("untrusted_deserialization", Report, 2, Any, false,
      r"\b(?:unsafe|insecure) deseriali[sz]ation\b|\bdeseriali[sz]ation of untrusted\b|\bdeseriali[sz]ation (?:vulnerability|gadget|attack)"),
    r("deserialization", Report, 1, Any, false,
      r"\bdeseriali[sz](?:e|ation|ing)\b|\bunseriali[sz]"),
    r("ssrf", Report, 3, Any, false,
      r"\bssrf\b|server[- ]side request forgery"),
    r("xxe", Report, 3, Any, false, r"\bxxe\b|xml external entit"),
    r("xss", Report, 3, Any, false,
      r"\bxss\b|cross[- ]site scripting"),
    r("csrf", Report, 2, Any, false,
      r"\bcsrf\b|\bxsrf\b|cross[- ]site request forgery"),
    r("smuggling", Report, 3, Any, false,
      r"\brequest smuggling\b|\bhttp desync|\bresponse splitting\b|\bsmuggl(?:e|ing)\b"),
    r("memory_safety", Report, 2, Any, false,
      r"\b(?:buffer|heap|integer) (?:overflow|underflow|over-?read)|\bstack[- ]based (?:buffer )?overflow|\bout[- ]of[- ]bounds (?:read|write|access)|\buse[- ]after[- ]free|\bdouble[- ]free|\bmemory corruption|\bnull pointer dereference"),
    r("open_redirect", Report, 2, Any, false, r"\bopen redirect"),
    r("idor", Report, 3, Any, false,
      r"\bidor\b|insecure direct object"),
    r("access_control", Report, 2, Any, false,
      r"\b(?:broken|missing|improper|insufficient|incorrect) (?:access control|authori[sz]ation|authentication|permission check|input validation)|\baccess control (?:issue|flaw|bypass|vulnerability)"),
    r("side_channel", Report, 2, Any, false,
      r"\btiming (?:attack|side[- ]channel|leak|oracle)|\bside[- ]channel|\bpadding oracle"),
    r("redos", Report, 2, Any, false,
      r"\bredos\b|regular expression denial|catastrophic backtracking"),
    r("prototype_pollution", Report, 3, Any, false,
      r"\bprototype pollution"),
    r("sandbox_escape", Report, 3, Any, false,
      r"\bsandbox (?:escape|bypass)|\bescape the sandbox"),
    r("race_condition", Report, 1, Any, false,
      r"\b(?:race condition|toctou)\b"),
    r("network_attack", Report, 1, Any, false,
      r"\bclickjacking|\bhost header (?:injection|poisoning)|\bmitm\b|man[- ]in[- ]the[- ]middle|\bdowngrade attack"),
    // --- report: disclosure language -----------------------------------------------------
    r("disclosure", Report, 2, Any, true,
      r"\b(?:responsible|coordinated|private|confidential) disclosure|\bembargo(?:ed)?\b|\bnot (?:yet )?(?:been )?(?:publicly )?(?:disclosed|published)\b|\bundisclosed\b|\b(?:request|assign|reserve|allocate)(?:ing)? (?:a )?cve\b|\bcve (?:id )?(?:assignment|request)\b|\b90[- ]days?\b"),
    r("vulnerability_word", Report, 1, Any, false,
      r"\bvulnerab(?:le|ility|ilities)\b|\bsecurity (?:issue|flaw|bug|problem|hole|weakness|vulnerability|defect|report)\b"),
    r("discovery", Report, 1, Body, true,
      r"\b(?:i|we) (?:have |'ve )?(?:found|discovered|identified|noticed)\b|\bduring (?:a |my |our )?(?:security )?(?:research|audit|review|assessment|pentest|penetration test|code review)"),
    r("report_sections", Report, 1, Body, false,
      r"\b(?:impact|attack (?:vector|scenario)|affected (?:versions?|components?)|root cause|vulnerability details|severity assessment|suggested (?:fix|remediation))\s*:|#+ ?(?:impact|attack (?:vector|scenario)|affected versions?|root cause|vulnerability details)\b"),
    r("normalisation_flaw", Report, 2, Any, false,
      r"\b(?:path|url|uri) normali[sz]ation\b|\bwithout normali[sz]ing\b|\bun-?normali[sz]ed\b|\bnon-?normali[sz]ed\b"),
    r("access_check", Report, 1, Body, false, r"\baccess (?:check|restriction|control|rule)s?\b"),
    r("http_transcript", Report, 1, Body, true, r"\bhttp/[12](?:\.[01])? [1-5]\d\d\b"),
    // --- question ------------------------------------------------------------------------
    r("subject_question_mark", Question, 2, Subject, false,
      r"\?\s*$"),
    r("subject_question_word", Question, 2, Subject, false,
      r"^(?:(?:re|fwd?|aw):\s*)*(?:how|what|is|are|does|do|can|could|when|which|why|where|will|would|should|question|query|inquiry|enquiry)\b"),
    r("how_do_i", Question, 3, Body, false,
      r"\bhow (?:exactly )?(?:do|does|can|should|would|could|is|are) (?:i|we|one|it|this|that|the)\b|\bhow to (?:configure|set up|setup|enable|disable|secure|harden|protect|install|upgrade|migrate|fix|avoid|prevent|mitigate|check|verify|stop|block|use)\b"),
    r("affected_by_cve", Question, 4, Any, false,
      r"\b(?:is|are|was|were)\b[^?!;]{0,100}\b(?:affected|vulnerable|impacted|exposed|exploitable|at risk)\b[^?!;]{0,60}\b(?:by|to|via|through)\b[^?!;]{0,60}(?:cve-\d{4}-\d+|log4shell|spring4shell|text4shell|heartbleed|this (?:cve|vulnerability|issue))[^?!]{0,80}\?"),
    r("whether_affected", Question, 3, Any, false,
      r"\b(?:whether|if)\b[^?!;]{0,120}\b(?:is|are)\s+(?:\S+\s+){0,4}(?:affected|vulnerable|impacted|exploitable)\b[^?!;]{0,60}(?:cve-\d{4}-\d+|log4shell|spring4shell|text4shell|vulnerabilit)"),
    r("support_question", Question, 3, Any, false,
      r"\b(?:does|do|will|can|is there)\b[^?!;]{0,60}\b(?:support|plan(?:ned)?|roadmap|compatible|work with|ship)\b[^?!;]{0,80}\?"),
    r("release_question", Question, 3, Any, false,
      r"\bwhen (?:will|is|are|do|does|can)\b[^?!;]{0,80}\b(?:release|released|fix|fixed|patch|patched|available|upgrade)\b[^?!;]{0,60}\?"),
    r("can_you_confirm", Question, 1, Body, false,
      r"\b(?:could|can|would) you (?:please )?(?:confirm|tell|let (?:me|us) know|clarify|advise|share|provide|send|check|look into)\b"),
    r("known_issue", Bug, 2, Body, false,
      r"\b(?:is this|is it|is there) a known\b|\bknown (?:\S+ )?(?:limitation|issue|bug|problem|regression)\b"),
    r("troubleshooting", Bug, 2, Body, false,
      r"\b(?:did not|didn't|does not|doesn't) help\b|\bno change\b|\bno effect\b|\bwhat (?:are|am) (?:we|i) missing\b|\banything (?:we|i) can do\b|\b(?:a )?(?:full )?restart fixes it\b|\buntil (?:we|i) restart\b|\bwithout a (?:full )?restart\b"),
    r("account_support", Bug, 3, Any, false,
      r"\b(?:reset|unlock|recover) (?:my |the )?(?:password|account)\b|\baccount (?:is |was |got )?(?:locked|disabled|suspended)\b|\bcan'?t log ?in to (?:the )?(?:issue tracker|jira|wiki|confluence|website|forum|mailing list)"),
    r("is_there_a_setting", Question, 2, Body, false,
      r"\bis there (?:a|any) (?:setting|option|way|config(?:uration)?|property|flag|workaround|parameter|build|version|release)\b|\b(?:more )?gracefully\b"),
    r("confirm_not_affected", Question, 4, Any, false,
      r"\bconfirm(?:ation)?\b[^?!;]{0,140}\b(?:not|un)? ?(?:affected|vulnerable|impacted)\b|\b(?:not affected|unaffected) (?:statement|letter|confirmation)"),
    r("compliance_paperwork", Question, 2, Any, false,
      r"\b(?:auditors?|letterhead|attestation|regulatory (?:file|submission|requirements?)|compliance (?:office|department|team|requirements?)|audit department|third[- ]party risk|supplier (?:id|risk|security|compliance)|risk management program(?:me)?)\b"),
    r("send_me_yours", Question, 2, Body, false, r"\bplease (?:send|share|provide) (?:me|us)\b"),
    r("wants_to_know", Question, 2, Any, false,
      r"\b(?:would like|want|wanted|need) to (?:know|ask|understand|confirm|check|clarify|find out)\b|\bwondering (?:if|whether)\b|\b(?:i|we) have (?:a|some|a few|several|two|three) (?:quick )?questions?\b|\bquick question\b|\bmy question is\b|\b(?:some|a few|several|my|our|following) questions\b|\bwe are (?:trying|looking) to (?:understand|determine|find out)"),
    r("questionnaire", Question, 4, Any, false,
      r"\bquestionnaires?\b|\bsecurity (?:assessment|review) (?:form|questions)|\bvendor (?:risk|security) (?:assessment|review|management)|\bsoc ?2\b|\biso ?27001\b|\bplease (?:fill|complete) (?:out |in )?(?:the|this|our|attached)|\bcompliance (?:form|requirements|questions)\b|\bsig lite\b|\bcaiq\b"),
    r("bounty_enquiry", Question, 3, Any, false,
      r"\bbug bount(?:y|ies)\b|\bbounty (?:program|programme|reward|payout)|\b(?:monetary|financial) (?:reward|compensation)|\bhall of fame\b|\bdo you (?:offer|pay|provide|have) (?:a |any )?(?:rewards?|bount(?:y|ies)|compensation)|\bswag\b"),
    r("policy_request", Question, 2, Any, false,
      r"\b(?:your|the) (?:security|disclosure|vulnerability disclosure) (?:policy|process|contact)\b|\b(?:pgp|gpg) (?:public )?key\b|\bkey fingerprint\b|\bsecurity\.txt\b|\bwho (?:should|do) i contact\b|\bhow (?:do|can|should) i report\b|\bright address for\b"),
    r("are_we_vulnerable", Question, 4, Any, false,
      r"\b(?:are|is|am) (?:we|i|our \S+|my \S+) (?:still )?(?:vulnerable|affected|at risk|exposed|safe|compromised|hacked)\b"),
    r("scanner_flagged_question", Question, 3, Any, false,
      r"\b(?:our|the|a|my) (?:\S+ )?(?:scanner|scan|scanning tool|sca tool)s? (?:flag(?:s|ged)?|reports?|reported|found|finds|shows|showed|detected|detects|complains)\b"),
    // Withholding the details is only an enquiry when it is about being paid first; "I'll send
    // the PoC once you confirm receipt" is an ordinary (if cautious) reporter.
    r("withheld_for_reward", Question, 6, Any, false,
      r"\bbefore (?:i|we) (?:share|send|provide|give|reveal)\b[^\x00]{0,200}\b(?:bount(?:y|ies)|rewards?|paid|pay|compensation)\b|\b(?:bount(?:y|ies)|rewards?|compensation)\b[^\x00]{0,200}\bbefore (?:i|we) (?:share|send|provide|give|reveal)\b"),
    r("withheld_details", Question, 2, Any, false,
      r"\bbefore (?:i|we) (?:share|send|provide|give|reveal) (?:the |any |more |further |full )?(?:details|poc|proof|information|report)\b"),
    r("wants_exploit", Question, 4, Any, false,
      r"\b(?:could|can|would) you (?:please )?(?:send|share|provide|give)(?: (?:me|us))? (?:the |a |an |your |some )?(?:original |working |public |existing )?(?:exploits?|pocs?|payloads?|proof[- ]of[- ]concepts?)\b|\b(?:send|share|give|provide) (?:me|us) (?:the |a |an |your |some )?(?:original |working |public |existing )?(?:exploits?|pocs?|payloads?|proof[- ]of[- ]concepts?)\b"),
    r("academic_or_sales", Question, 5, Any, false,
      r"\b(?:master'?s? thesis|bachelor'?s? thesis|my thesis|my supervisor|homework|course assignment|student project|complimentary|free of charge|quick call|schedule a (?:call|meeting|demo)|book a (?:call|demo)|business development|pricing|penetration testing (?:company|services|firm))\b"),
    r("sbom_request", Question, 4, Any, false, r"\bsbom\b|software bill of materials|\bvex\b|\bcyclonedx\b|\bspdx\b"),
    r("vendor_coordination", Question, 2, Any, false,
      r"\bpre-?notif\w*|\bdownstream (?:vendors?|consumers?|distributors?)\b|\badvance notice\b|\btime to first response\b|\b(?:the right|not the right) (?:person|contact|address)\b|\bwhoever (?:handles|is responsible)\b"),
    r("hedged_claim", Question, 2, Any, false, r"\b(?:may|might|could) be (?:exposed|vulnerable|affected) to\b"),
    r("recommendation", Question, 2, Body, false,
      r"\b(?:what|which) (?:is|are) (?:the )?(?:recommended|best|correct|right|safest)\b|\bbest practices?\b|\b(?:do )?you recommend\b|\brecommended (?:settings?|configuration|values?|way)\b|\brecommend(?:ed|ation)s? for (?:securing|hardening|configuring)"),
    // --- bug -----------------------------------------------------------------------------
    r("expected_behaviour", Bug, 3, Body, false,
      r"\bexpected (?:behaviou?r|result|outcome|output)\b|\bexpected\s*:"),
    r("actual_behaviour", Bug, 2, Body, false,
      r"\bactual (?:behaviou?r|result|outcome|output)\b|\bactual\s*:"),
    r("after_upgrade", Bug, 2, Any, false,
      r"\bafter (?:upgrading|updating|the upgrade|the update|migrating|switching|the migration|rotating|renewing|replacing|restarting)\b|\bsince (?:the |we |finishing (?:the )?|moving |migrating )?(?:upgrad\w*|updat\w*|migrat\w*|mov\w*|switch\w*)\b|\bupgraded (?:from|to)\b|\bmoved (?:\S+ ){0,3}from \S+ [\d.]+ to\b|\bmigrated (?:\S+ ){0,3}from\b"),
    r("regression", Bug, 2, Any, false,
      r"\bregression\b|\bused to work\b|\b(?:worked|was working) (?:fine |correctly |well )?(?:on|in|with|before|under|until)\b|\bno longer works?\b|\bcan no longer\b|\bstopped working\b|\bdowngrad(?:e|ed|ing)\b|\bnothing else changed\b|\bthe same \S+ worked\b|\b(?:it )?(?:was|were|worked) fine (?:on|in|with|before|under)\b"),
    r("not_working", Bug, 2, Any, false,
      r"\b(?:doesn'?t|does not|don'?t|won'?t|will not|cannot|can'?t|could not|couldn'?t|unable to|fails? to|failing to|failed to|not able to)\s+(?:work|start|connect|load|deploy|compile|build|run|authenticate|log ?in|login|find|resolve|handshake|bind|read|open|send|receive|display|render|shut ?down|stop|boot|renew|verify)\b|\bnot working\b|\bis broken\b|\bfails? (?:at|on|during) (?:startup|start|boot|login|deploy\w*)\b|\b(?:handshake|connection|login|startup|deployment|build) (?:failed|fails|failing)\b"),
    r("feature_request", Bug, 4, Any, false,
      r"\bfeature request\b|\benhancement request\b|\bit would be (?:nice|great|useful|helpful)\b|\b(?:could|can|would) you (?:please )?add\b|\bplease add\b|\badd (?:support|an option|a feature) for\b|\bwould like (?:to see|a feature|support for)\b"),
    r("error_words", Bug, 1, Any, false,
      r"\b[a-z.]*(?:exception|error)\b|\btraceback\b|\bstack ?trace\b|\bstacktrace\b|\bcaused by:"),
    r("is_it_a_bug", Bug, 2, Body, false, r"\bor (?:is )?(?:this|it) (?:just )?a bug\b|\bis (?:this|it) (?:just )?a bug\?"),
    r("environment_section", Bug, 1, Body, false,
      r"\b(?:environment|jdk version|java version|jvm|operating system|browser|tomcat version)\s*:"),
    r("configuration_help", Bug, 1, Body, false,
      r"\bmisconfigur|\bconfiguration (?:issue|problem|question)|\bmy (?:config|configuration|setup|server\.xml|web\.xml|httpd\.conf)\b"),
    r("tracker_talk", Bug, 1, Body, false,
      r"\b(?:jira|bugzilla|github issue|issue tracker|bug tracker)\b|\bshould i (?:file|open|create) (?:a |an )?(?:bug|issue|ticket)"),
    r("performance", Bug, 1, Any, false,
      r"\b(?:slow(?:er|ness)?|performance|memory leak|high cpu|latency|throughput)\b"),
    // --- scanner -------------------------------------------------------------------------
    r("scanner_banner", Scanner, 3, Any, false,
      r"\b(?:nessus|tenable|qualys|openvas|greenbone|nikto|acunetix|burp (?:suite )?(?:scanner|pro(?:fessional)?)|netsparker|invicti|owasp zap|zap scanning report|zaproxy|trivy|grype|snyk|dependency-check|dependency check|dependabot|renovate|npm audit|yarn audit|pip-audit|retire\.?js|sonarqube|sonarcloud|checkmarx|fortify|veracode|nuclei|wpscan|nmap|sslscan|testssl|sslyze|appscan|rapid7|nexpose|insightvm|whitesource|mend\.io|black ?duck|prisma cloud|anchore|ossindex|osv-scanner|sast|dast|sca tool)\b"),
    r("scan_report", Scanner, 2, Any, false,
      r"\bscan(?:ning|ner)? (?:report|results?|summary|output|findings)\b|\bvulnerability scan|\bautomated (?:scan|scanner|tool|security scan)|\bplugin (?:id|output)\b|\b(?:total|found) \d+ vulnerabilit|\b\d+ vulnerabilities \(|\brisk (?:level|rating)\s*:|\brisk summary\b|\b\d+ (?:open )?(?:\w+ )?alerts\b|\b\d{2,} (?:security )?(?:issues|findings|vulnerabilities)\b|\bcritical:\s*\d+\s+high:\s*\d+"),
    r("scanner_columns", Scanner, 3, Body, false,
      r"\b(?:library|package|component|dependency|plugin|vulnerability id|cve|name)\s*\|[^\n]*\b(?:severity|cvss|installed|fixed version|version)\b"),
    r("scanner_status_lines", Scanner, 3, Body, false,
      r"\b(?:warn|fail|info|pass)-(?:new|inprog)\s*:|\bfix available via\b|\bissue detail\s*:|\bdetected in \S+ \("),
    r("scanner_fields", Scanner, 3, Body, false,
      r"(?m)^[ \t]*(?:qid|threat|solution|results|synopsis|see also|plugin output)[ \t]*:"),
    r("fixed_version_fields", Scanner, 1, Body, false,
      r"\b(?:installed version|fixed version|fixed in version|vulnerable version)\s*:?"),
    r("findings_list", Scanner, 2, Body, false,
      r"\b(?:found|detected|identified|flagged) (?:\d+|several|multiple|many|the following) (?:vulnerabilit(?:y|ies)|issues|cves|findings)\b|\bthe following (?:vulnerabilities|cves|findings|issues) (?:were|have been) (?:found|detected|identified|reported)"),
];

/// Distinct CVE ids at which the scanner side gets [`MANY_CVES_WEIGHT`] (and twice that at
/// [`VERY_MANY_CVES`]).
const MANY_CVES: usize = 4;
const VERY_MANY_CVES: usize = 8;
const MANY_CVES_WEIGHT: i32 = 3;
/// Lines with a severity word next to an id, at which the scanner side gets its table weight.
const SEVERITY_ROWS: usize = 3;
const SEVERITY_TABLE_WEIGHT: i32 = 3;
/// Stack-frame lines at which the bug side gets its stack-trace weight.
const STACK_FRAMES: usize = 3;
const STACK_TRACE_WEIGHT: i32 = 2;
/// Body lines ending in `?` at which the question side gets weight.
const QUESTION_LINES: usize = 2;
const QUESTION_LINES_WEIGHT: i32 = 1;

static CVE_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&ascii_pattern(false, r"cve-\d{4}-\d{4,7}|ghsa(?:-[0-9a-z]{4}){3}")).expect("static regex")
});
static SEVERITY_ROW: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&ascii_pattern(false, r"\b(?:critical|high|medium|moderate|low)\b")).expect("static regex")
});
static ROW_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&ascii_pattern(
        false,
        r"cve-\d{4}-\d+|ghsa-[a-z0-9]{4}-|\bplugin\b|\b\d+\.\d+(?:\.\d+)?\b",
    ))
    .expect("static regex")
});
static SEVERITY_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&ascii_pattern(false, r"^\s*(?:severity|risk)\s*[:=]\s*(?:critical|high|medium|moderate|low)\b|^\s*(?:critical|high|medium|moderate|low)\s\s+\S|\[(?:critical|high|medium|moderate|low)[,\]]")).expect("static regex")
});
const STACK_FRAME_PATTERN: &str = r"^\s*(?:at [\w$.<>/]+\(|file .*, line \d+, in |#\d+\s+0x[0-9a-f]+ in )";
static STACK_FRAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&ascii_pattern(false, STACK_FRAME_PATTERN)).expect("static regex"));
/// Every line [`SEVERITY_ROW`] or [`SEVERITY_FIELD`] can match contains one of these. They
/// are triggers too, of a pseudo-rule numbered `RULES.len()`, so the one trigger pass finds them.
const SEVERITY_WORDS: [&str; 7] = ["critical", "high", "medium", "moderate", "low", "severity", "risk"];

/// Lines of a body that count as shapes rather than words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lines {
    /// Rows of a table with a severity and an id or version.
    severity_rows: usize,
    /// Stack frames.
    frames: usize,
    /// Lines ending with a question mark.
    questions: usize,
}

impl Lines {
    /// Counts, running the line regexes only on the lines that can match them.
    /// `severity` holds where the [`SEVERITY_WORDS`] occur in `text.body`, sorted by start;
    /// the other shapes were counted line by line as the text was made.
    fn count(text: &Text, severity: &[Hit]) -> Lines {
        let body = text.body.as_str();
        let word = |i: usize| {
            body.as_bytes()
                .get(i)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        };
        let mut severity_rows = 0;
        let mut line_end = 0;
        for &(at, end) in severity {
            // Every severity shape has the word standing alone ("follow" is not "low").
            if at < line_end || (at > 0 && word(at - 1)) || word(end) {
                continue;
            }
            let line_start = body.get(..at).and_then(|s| s.rfind('\n')).map_or(0, |i| i + 1);
            line_end = body.get(at..).and_then(|s| s.find('\n')).map_or(body.len(), |i| at + i);
            if body.get(line_start..line_end).is_some_and(severity_row) {
                severity_rows += 1;
            }
        }
        Lines {
            severity_rows,
            frames: text.frames,
            questions: text.questions,
        }
    }

    /// Adds one line's frame and question shapes to `frames` and `questions`.
    fn shapes(line: &str, frames: &mut usize, questions: &mut usize) {
        // Every frame starts with "at", "file" or "#" after the indentation.
        let code = line.trim_start_matches(['\t', '\x0B', '\x0C', '\r', ' ']);
        if (code.starts_with("at") || code.starts_with("file") || code.starts_with('#')) && STACK_FRAME.is_match(line) {
            *frames += 1;
        }
        if line.trim_end().ends_with('?') {
            *questions += 1;
        }
    }

    /// The same counts, the plain way: every line against every shape.
    fn count_each(body: &str) -> Lines {
        let (mut severity_rows, mut frames, mut questions) = (0, 0, 0);
        for line in body.lines() {
            if severity_row(line) {
                severity_rows += 1;
            }
            if STACK_FRAME.is_match(line) {
                frames += 1;
            }
            if line.trim_end().ends_with('?') {
                questions += 1;
            }
        }
        Lines {
            severity_rows,
            frames,
            questions,
        }
    }
}

/// Whether one line is a row of a severity table.
fn severity_row(line: &str) -> bool {
    (SEVERITY_ROW.is_match(line) && ROW_ID.is_match(line)) || SEVERITY_FIELD.is_match(line)
}

/// The compiled rules.
pub struct TopicRules {
    /// One compiled rule per entry of [`RULES`], in order.
    rules: Vec<Compiled>,
    /// One pass over the text finds where each rule can match at all: every trigger literal of
    /// every rule that has them.
    triggers: Option<AhoCorasick>,
    /// Trigger pattern -> the rules it triggers, each with how far that rule's matches can
    /// reach around it.
    trigger_rules: Vec<Vec<(usize, Reach)>>,
}

/// One rule, ready to search.
struct Compiled {
    re: meta::Regex,
    find: Find,
}

/// How a rule's leftmost match is found, given where its trigger literals occur.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Find {
    /// Every match starts with a trigger: an anchored search at each occurrence, in order; the
    /// first that matches is the leftmost match, so this is exact and costs only the length of
    /// each attempt.
    Prefix,
    /// Every match contains a trigger and is at most `max_len` bytes long: only the windows
    /// around the occurrences are searched, as far as a match can reach from each trigger (at
    /// most `max_len` bytes either side; see [`reaches`]).
    Window { max_len: usize },
    /// No usable literals: the whole text is searched.
    Always,
}

/// Where one trigger literal occurred, for one rule: the span a match around it can take
/// (for [`Find::Prefix`] and the severity words, the occurrence itself).
type Hit = (usize, usize);

/// How far a match can extend around one trigger: at most `before` bytes before the
/// occurrence starts and `after` bytes after it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reach {
    before: usize,
    after: usize,
}

/// How far a bounded rule lets an unbounded repetition run (see [`ascii_pattern`]).
const REPEAT_BOUND: u32 = 32;

/// The outcome of scoring: `offtopic` is set when the message should be turned away.
pub struct Scored {
    /// The off-topic reason, when one side won clearly.
    pub offtopic: Option<Reason>,
    /// Evidence, strongest first.
    pub signals: Vec<Signal>,
    /// Score per side.
    pub scores: Scores,
}

impl Default for TopicRules {
    fn default() -> Self {
        Self::new()
    }
}

impl TopicRules {
    /// Compiles [`RULES`].
    pub fn new() -> TopicRules {
        // One regex per rule rather than one RegexSet: the set of ~100 rules with bounded
        // repetitions overflows the lazy DFA's cache and falls back to the PikeVM (measured
        // 35x slower on the benchmark mix). Running ~100 regexes over every body is slower
        // still, so one Aho-Corasick pass finds where each rule's literals occur, and a rule is
        // searched only there (see `Find`).
        let mut rules = Vec::with_capacity(RULES.len());
        // Each distinct literal is one automaton pattern, listing the rules it triggers.
        let mut words: Vec<Vec<u8>> = Vec::new();
        let mut trigger_rules: Vec<Vec<(usize, Reach)>> = Vec::new();
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut trigger = |literal: Vec<u8>, rule: usize, reach: Reach| {
            let n = *index.entry(literal.clone()).or_insert_with(|| {
                words.push(literal);
                trigger_rules.push(Vec::new());
                words.len() - 1
            });
            if let Some(rules) = trigger_rules.get_mut(n)
                && !rules.iter().any(|&(r, _)| r == rule)
            {
                rules.push((rule, reach));
            }
        };
        for (i, rule) in RULES.iter().enumerate() {
            let manual = manual_triggers(rule.name);
            let pattern = ascii_pattern(manual.is_some(), rule.pattern);
            // Bytes, not chars: the rules are ASCII, and `[^?!;]{0,100}` as UTF-8 would
            // be 400 bytes long, for a DFA four times the size and windows four times as wide.
            let hir = regex_syntax::ParserBuilder::new()
                .unicode(false)
                .utf8(false)
                .build()
                .parse(&pattern)
                .expect("static rules parse");
            let (find, lits) = match manual {
                Some(w) => match hir.properties().maximum_len() {
                    // A rule that ends with '?' is searched around the question marks, which
                    // are rarer than any of its words.
                    Some(max_len) if ends_with_question(&hir) => (Find::Window { max_len }, vec![b"?".to_vec()]),
                    Some(max_len) => (
                        Find::Window { max_len },
                        w.iter().map(|x| x.as_bytes().to_vec()).collect(),
                    ),
                    None => (Find::Always, Vec::new()),
                },
                None => match literal_prefixes(&hir) {
                    Some(lits) => (Find::Prefix, lits),
                    None => (Find::Always, Vec::new()),
                },
            };
            let reach = match find {
                Find::Window { max_len } => reaches(&hir, &lits).unwrap_or_else(|| {
                    vec![
                        Reach {
                            before: max_len,
                            after: max_len
                        };
                        lits.len()
                    ]
                }),
                _ => vec![Reach::default(); lits.len()],
            };
            for (l, reach) in lits.into_iter().zip(reach) {
                trigger(l, i, reach);
            }
            // A rule searched in windows or from its triggers gets no prefilter of its own:
            // the trigger pass has already found its literals, and in a window of a few
            // hundred bytes a second literal search costs more than the DFA it would skip.
            let re = meta::Builder::new()
                .configure(meta::Config::new().auto_prefilter(find == Find::Always))
                .syntax(syntax::Config::new().unicode(false).utf8(false))
                .build(&pattern)
                .expect("static rules compile");
            rules.push(Compiled { re, find });
        }
        for w in SEVERITY_WORDS {
            trigger(w.as_bytes().to_vec(), RULES.len(), Reach::default());
        }
        let triggers = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(&words)
            .ok();
        if triggers.is_none() {
            rules.iter_mut().for_each(|r| r.find = Find::Always);
        }
        TopicRules {
            rules,
            triggers,
            trigger_rules,
        }
    }

    /// Every trigger occurrence in `text`, grouped by rule.
    fn hits(&self, text: &str) -> Hits {
        // Rules (and the severity pseudo-rule) are buckets of a counting sort: a sort of
        // all hits by rule cost more than the automaton that found them.
        let buckets = self.rules.len() + 1;
        let mut found: Vec<(usize, Hit)> = Vec::new();
        let mut starts = vec![0; buckets + 1];
        if let Some(ac) = &self.triggers {
            for m in ac.find_overlapping_iter(text) {
                for &(rule, reach) in self.trigger_rules.get(m.pattern().as_usize()).into_iter().flatten() {
                    let span = (
                        m.start().saturating_sub(reach.before),
                        m.end().saturating_add(reach.after).min(text.len()),
                    );
                    found.push((rule, span));
                    if let Some(n) = starts.get_mut(rule + 1) {
                        *n += 1;
                    }
                }
            }
        }
        for i in 1..starts.len() {
            let before = starts.get(i - 1).copied().unwrap_or(0);
            if let Some(n) = starts.get_mut(i) {
                *n += before;
            }
        }
        let mut spans = vec![(0, 0); found.len()];
        let mut next = starts.clone();
        for (rule, span) in found {
            if let Some(at) = next.get_mut(rule)
                && let Some(slot) = spans.get_mut(*at)
            {
                *slot = span;
                *at += 1;
            }
        }
        // The automaton reports by end, so each bucket is nearly sorted by start already.
        for pair in starts.windows(2) {
            if let [a, b] = *pair
                && let Some(bucket) = spans.get_mut(a..b)
            {
                bucket.sort_unstable();
            }
        }
        Hits { spans, starts }
    }

    /// Scores a message and decides whether it is off-topic.
    pub fn score(&self, msg: &Inbound) -> Scored {
        self.score_text(&Text::of(msg))
    }

    /// As [`TopicRules::score`], on text already made.
    pub fn score_text(&self, text: &Text) -> Scored {
        let (subject, body) = (&text.subject, &text.body);
        let (in_subject, in_body) = (self.hits(subject), self.hits(body));
        let fired = self.fire(|i, c, part| match part {
            Subject => c.find(subject, in_subject.of(i)),
            _ => c.find(body, in_body.of(i)),
        });
        let lines = match self.triggers {
            Some(_) => Lines::count(text, in_body.of(RULES.len())),
            None => Lines::count_each(body),
        };
        self.decide(body, fired, lines)
    }

    /// Scoring the plain way: every rule searches all the text, and every line is matched
    /// against the line shapes. Tests compare the two.
    #[doc(hidden)]
    pub fn score_unfiltered(&self, msg: &Inbound) -> Scored {
        let Text { subject, body, .. } = Text::of(msg);
        let fired = self.fire(|_, c, part| match part {
            Subject => whole(&c.re, &subject),
            _ => whole(&c.re, &body),
        });
        self.decide(&body, fired, Lines::count_each(&body))
    }

    /// Every rule that matches where its scope says, with its evidence, in [`RULES`] order.
    /// `find(i, rule, part)` searches rule `i` in the subject (`Subject`) or the body (`Body`).
    fn fire<'t>(&self, find: impl Fn(usize, &Compiled, Scope) -> Option<&'t str>) -> Vec<(usize, &'t str)> {
        let mut fired = Vec::new();
        for (i, (rule, c)) in RULES.iter().zip(&self.rules).enumerate() {
            let hit = match rule.scope {
                Subject => find(i, c, Subject),
                Body => find(i, c, Body),
                Any => find(i, c, Subject).or_else(|| find(i, c, Body)),
            };
            if let Some(m) = hit {
                fired.push((i, m));
            }
        }
        fired
    }

    fn decide(&self, body: &str, fired: Vec<(usize, &str)>, lines: Lines) -> Scored {
        let mut scores = Scores::default();
        let mut narrative = 0;
        let mut signals = Vec::with_capacity(fired.len() + 4);
        for (rule_idx, evidence) in fired {
            let Some(rule) = RULES.get(rule_idx) else { continue };
            scores.add(rule.side, rule.weight);
            if rule.side == Side::Report && rule.narrative {
                narrative += rule.weight;
            }
            let weight = if rule.side == Side::Report {
                rule.weight
            } else {
                -rule.weight
            };
            signals.push(Signal::new(rule.name, weight, evidence));
        }

        // Counted shapes.
        let cves: HashSet<&str> = CVE_ID.find_iter(body).take(200).map(|m| m.as_str()).collect();
        if cves.len() >= MANY_CVES {
            let w = if cves.len() >= VERY_MANY_CVES {
                2 * MANY_CVES_WEIGHT
            } else {
                MANY_CVES_WEIGHT
            };
            scores.add(Side::Scanner, w);
            signals.push(Signal::new(
                "many_advisory_ids",
                -w,
                &format!("{} distinct CVE/GHSA ids", cves.len()),
            ));
        }
        let Lines {
            severity_rows,
            frames,
            questions,
        } = lines;
        if severity_rows >= SEVERITY_ROWS {
            scores.add(Side::Scanner, SEVERITY_TABLE_WEIGHT);
            signals.push(Signal::new(
                "severity_table",
                -SEVERITY_TABLE_WEIGHT,
                &format!("{severity_rows} rows with a severity"),
            ));
        }
        if frames >= STACK_FRAMES || body.contains("traceback (most recent call last)") {
            scores.add(Side::Bug, STACK_TRACE_WEIGHT);
            signals.push(Signal::new(
                "stack_trace",
                -STACK_TRACE_WEIGHT,
                &format!("{frames} stack frames"),
            ));
        }
        if questions >= QUESTION_LINES {
            scores.add(Side::Question, QUESTION_LINES_WEIGHT);
            signals.push(Signal::new(
                "question_lines",
                -QUESTION_LINES_WEIGHT,
                &format!("{questions} lines end with '?'"),
            ));
        }

        let report = scores.get(Side::Report);
        let candidates = [
            (Side::Scanner, Reason::ScannerOutput, narrative),
            (Side::Question, Reason::Question, report),
            (Side::Bug, Reason::BugReport, report),
        ];
        let mut offtopic = None;
        let mut best_margin = i32::MIN;
        for (side, reason, against) in candidates {
            let s = scores.get(side);
            let margin = s - against;
            if s >= MIN_OFFTOPIC && margin >= MARGIN && margin > best_margin {
                best_margin = margin;
                offtopic = Some(reason);
            }
        }
        signals.sort_by_key(|s| std::cmp::Reverse(s.weight.abs()));
        Scored {
            offtopic,
            signals,
            scores,
        }
    }
}

/// The score of each side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scores {
    /// Evidence of a report.
    pub report: i32,
    /// Evidence of a bug report.
    pub bug: i32,
    /// Evidence of a question.
    pub question: i32,
    /// Evidence of scanner output.
    pub scanner: i32,
}

impl Scores {
    fn slot(&mut self, side: Side) -> &mut i32 {
        match side {
            Side::Report => &mut self.report,
            Side::Bug => &mut self.bug,
            Side::Question => &mut self.question,
            Side::Scanner => &mut self.scanner,
        }
    }

    fn add(&mut self, side: Side, weight: i32) {
        *self.slot(side) += weight;
    }

    /// The score of one side.
    pub fn get(&self, side: Side) -> i32 {
        match side {
            Side::Report => self.report,
            Side::Bug => self.bug,
            Side::Question => self.question,
            Side::Scanner => self.scanner,
        }
    }
}

/// Rewrites a rule for speed and robustness, keeping its meaning on lowercased mail text:
/// - a space matches any run of whitespace, so phrases survive line wrapping ("bug\nbounty");
/// - `\b`, `\d`, `\s`, `\w` become their ASCII forms: the rules are ASCII, and Unicode word
///   boundaries make the lazy DFA give up on the first non-ASCII byte of a message;
/// - when `bounded`, every unbounded repetition (`+`, `*`, `{n,}`) may repeat at most
///   [`REPEAT_BOUND`] more times, so that every match has a maximum length and the rule can be
///   searched in windows around its triggers.
fn ascii_pattern(bounded: bool, pattern: &str) -> String {
    const SPACE: &str = r"\t\n\x0B\x0C\r ";
    let mut out = String::with_capacity(pattern.len() + 32);
    let mut in_class = false;
    let mut chars = pattern.chars();
    let plus = if bounded {
        format!("{{1,{REPEAT_BOUND}}}")
    } else {
        "+".to_string()
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('b') if !in_class => out.push_str(r"(?-u:\b)"),
                Some('d') if in_class => out.push_str("0-9"),
                Some('d') => out.push_str("[0-9]"),
                Some('w') if in_class => out.push_str("0-9a-zA-Z_"),
                Some('w') => out.push_str("[0-9a-zA-Z_]"),
                Some('s') if in_class => out.push_str(SPACE),
                Some('s') => {
                    out.push('[');
                    out.push_str(SPACE);
                    out.push(']');
                }
                Some('S') if !in_class => {
                    out.push_str("[^");
                    out.push_str(SPACE);
                    out.push(']');
                }
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A leading `]` or `^]` is literal inside a class.
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            ' ' if !in_class => {
                out.push('[');
                out.push_str(SPACE);
                out.push(']');
                out.push_str(&plus);
            }
            '+' if bounded && !in_class => out.push_str(&plus),
            '*' if bounded && !in_class => out.push_str(&format!("{{0,{REPEAT_BOUND}}}")),
            '{' if bounded && !in_class => {
                let mut rep = String::new();
                for d in chars.by_ref() {
                    if d == '}' {
                        break;
                    }
                    rep.push(d);
                }
                match rep.strip_suffix(',').and_then(|n| n.parse::<u32>().ok()) {
                    Some(n) => out.push_str(&format!("{{{n},{}}}", n.saturating_add(REPEAT_BOUND))),
                    None => out.push_str(&format!("{{{rep}}}")),
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// For each of `words`, how far a match of `hir` can reach around an occurrence of it that
/// lies inside one of the pattern's literals. `None` unless every match passes through such a
/// literal (then the window around that occurrence holds the whole match), or when a word
/// occurs in no literal, or when the pattern is unbounded.
fn reaches(hir: &Hir, words: &[Vec<u8>]) -> Option<Vec<Reach>> {
    if !covered(hir, words) {
        return None;
    }
    let mut out = vec![None; words.len()];
    spans(hir, words, Reach::default(), &mut out)?;
    out.into_iter().collect()
}

/// Whether every match of `hir` passes through a literal that contains one of `words`.
/// A run of literal pieces (see [`spellings`]) counts as a literal when every spelling of
/// the run contains one.
fn covered(hir: &Hir, words: &[Vec<u8>]) -> bool {
    let has = |s: &Vec<u8>| words.iter().any(|w| contains(s, w));
    match hir.kind() {
        HirKind::Literal(lit) => words.iter().any(|w| contains(&lit.0, w)),
        HirKind::Concat(subs) => runs(subs).iter().any(|run| match run {
            Run::Spelled(all) => all.iter().all(has),
            Run::Other(h) => covered(h, words),
        }),
        HirKind::Alternation(subs) => subs.iter().all(|h| covered(h, words)),
        HirKind::Repetition(rep) => rep.min >= 1 && covered(&rep.sub, words),
        HirKind::Capture(cap) => covered(&cap.sub, words),
        HirKind::Empty | HirKind::Class(_) | HirKind::Look(_) => false,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The children of a concatenation, with each run of literal pieces spelled out.
enum Run<'h> {
    /// Every string a run of consecutive literal pieces can match.
    Spelled(Vec<Vec<u8>>),
    /// Any other child.
    Other(&'h Hir),
}

/// At most this many spellings per run; a longer run is analysed piece by piece.
const MAX_SPELLINGS: usize = 64;

fn runs(subs: &[Hir]) -> Vec<Run<'_>> {
    let mut out = Vec::new();
    let mut run: Option<Vec<Vec<u8>>> = None;
    for h in subs {
        let joined = match (spellings(h), &run) {
            (Some(next), Some(sofar)) if sofar.len() * next.len() <= MAX_SPELLINGS => Some(
                sofar
                    .iter()
                    .flat_map(|a| next.iter().map(move |b| [a.as_slice(), b.as_slice()].concat()))
                    .collect(),
            ),
            (Some(next), None) => Some(next),
            (Some(next), Some(_)) => {
                out.extend(run.take().map(Run::Spelled));
                Some(next)
            }
            (None, _) => {
                out.extend(run.take().map(Run::Spelled));
                out.push(Run::Other(h));
                None
            }
        };
        if joined.is_some() {
            run = joined;
        }
    }
    out.extend(run.map(Run::Spelled));
    out
}

/// The strings a literal piece matches: a literal, an optional literal (`n'?t`), or a
/// class of at most four bytes (`http/[12]`).
fn spellings(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    match hir.kind() {
        HirKind::Literal(lit) => Some(vec![lit.0.to_vec()]),
        HirKind::Repetition(rep) if rep.min == 0 && rep.max == Some(1) => {
            let mut s = spellings(&rep.sub)?;
            s.push(Vec::new());
            Some(s)
        }
        HirKind::Class(regex_syntax::hir::Class::Bytes(c)) => {
            let bytes: Vec<u8> = c.iter().flat_map(|r| r.start()..=r.end()).take(5).collect();
            (bytes.len() <= 4).then(|| bytes.into_iter().map(|b| vec![b]).collect())
        }
        HirKind::Capture(cap) => spellings(&cap.sub),
        _ => None,
    }
}

/// Widens `out[i]` to cover every occurrence of `words[i]` in the literals of `hir`, given
/// that at most `ctx.before` bytes of the match precede `hir` and `ctx.after` follow it.
fn spans(hir: &Hir, words: &[Vec<u8>], ctx: Reach, out: &mut [Option<Reach>]) -> Option<()> {
    match hir.kind() {
        HirKind::Literal(lit) => occurrences(&[lit.0.to_vec()], words, ctx, out),
        HirKind::Concat(subs) => {
            let total = hir.properties().maximum_len()?;
            let mut sofar = 0;
            for run in runs(subs) {
                let len = match &run {
                    Run::Spelled(all) => all.iter().map(Vec::len).max().unwrap_or(0),
                    Run::Other(h) => h.properties().maximum_len()?,
                };
                let inner = Reach {
                    before: ctx.before + sofar,
                    after: ctx.after + (total - sofar - len),
                };
                match run {
                    // Each spelling is measured from the run's start: the run ends no later
                    // than `len` bytes on, so what follows it is at most `inner.after` bytes.
                    Run::Spelled(all) => {
                        for s in &all {
                            let this = Reach {
                                before: inner.before,
                                after: inner.after + (len - s.len()),
                            };
                            occurrences(std::slice::from_ref(s), words, this, out);
                        }
                    }
                    Run::Other(h) => spans(h, words, inner, out)?,
                }
                sofar += len;
            }
        }
        HirKind::Alternation(subs) => {
            for h in subs {
                spans(h, words, ctx, out)?;
            }
        }
        HirKind::Repetition(rep) => {
            let max = usize::try_from(rep.max?).ok()?;
            if max > 0 {
                let extra = (max - 1).checked_mul(rep.sub.properties().maximum_len()?)?;
                let inner = Reach {
                    before: ctx.before + extra,
                    after: ctx.after + extra,
                };
                spans(&rep.sub, words, inner, out)?;
            }
        }
        HirKind::Capture(cap) => spans(&cap.sub, words, ctx, out)?,
        HirKind::Empty | HirKind::Class(_) | HirKind::Look(_) => {}
    }
    Some(())
}

/// Widens `out` for every occurrence of a word in `spellings`, which stand `ctx` from the
/// ends of the match.
fn occurrences(spellings: &[Vec<u8>], words: &[Vec<u8>], ctx: Reach, out: &mut [Option<Reach>]) {
    for lit in spellings {
        for (w, slot) in words.iter().zip(out.iter_mut()) {
            if w.is_empty() || w.len() > lit.len() {
                continue;
            }
            for (at, window) in lit.windows(w.len()).enumerate() {
                if window != w.as_slice() {
                    continue;
                }
                let here = Reach {
                    before: ctx.before + at,
                    after: ctx.after + (lit.len() - at - w.len()),
                };
                let wider = slot.get_or_insert(here);
                wider.before = wider.before.max(here.before);
                wider.after = wider.after.max(here.after);
            }
        }
    }
}

/// Whether every match of a rule ends with '?'.
fn ends_with_question(hir: &Hir) -> bool {
    let seq = Extractor::new().kind(ExtractKind::Suffix).extract(hir);
    seq.literals()
        .is_some_and(|lits| !lits.is_empty() && lits.iter().all(|l| l.as_bytes() == b"?"))
}

/// The trigger occurrences in one text, grouped by rule.
struct Hits {
    /// Every rule's hits, rule after rule, each rule's sorted by start.
    spans: Vec<Hit>,
    /// Where each rule's hits begin in `spans`; one more entry than there are rules.
    starts: Vec<usize>,
}

impl Hits {
    /// The hits of rule `i`, sorted by start.
    fn of(&self, i: usize) -> &[Hit] {
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&a), Some(&b)) => self.spans.get(a..b).unwrap_or_default(),
            _ => &[],
        }
    }
}

/// The text of the leftmost match of `re` in all of `text`.
fn whole<'t>(re: &meta::Regex, text: &'t str) -> Option<&'t str> {
    re.find(text).map(|m| evidence(text, m.range()))
}

/// The text of a match, widened to whole characters (the rules match bytes, and a class such
/// as `[^?]` can end inside a character).
fn evidence(text: &str, range: std::ops::Range<usize>) -> &str {
    let (mut a, mut b) = (range.start.min(text.len()), range.end.min(text.len()));
    while !text.is_char_boundary(a) {
        a -= 1;
    }
    while !text.is_char_boundary(b) {
        b += 1;
    }
    text.get(a..b).unwrap_or_default()
}

impl Compiled {
    /// The leftmost match in `text`, given the occurrences of this rule's triggers there
    /// (sorted by start). The same match as [`whole`] whenever the rule's triggers are right.
    fn find<'t>(&self, text: &'t str, hits: &[Hit]) -> Option<&'t str> {
        match self.find {
            Find::Always => whole(&self.re, text),
            Find::Prefix => {
                let mut last = None;
                for &(start, _) in hits {
                    if last == Some(start) {
                        continue;
                    }
                    last = Some(start);
                    let input = Input::new(text).range(start..).anchored(Anchored::Yes);
                    if let Some(m) = self.re.find(input) {
                        return Some(evidence(text, m.range()));
                    }
                }
                None
            }
            Find::Window { .. } => {
                // Each hit is already the window a match around it can take. Merge
                // overlapping windows; search each; the first with a match holds the leftmost
                // one, which starts no earlier than the window (an earlier match would contain
                // a trigger whose window starts earlier, inside an earlier merged window).
                let mut window: Option<(usize, usize)> = None;
                for &(a, b) in hits {
                    match window {
                        Some((wa, wb)) if a <= wb => window = Some((wa, wb.max(b))),
                        _ => {
                            if let Some(m) = window.and_then(|w| self.in_window(text, w)) {
                                return Some(m);
                            }
                            window = Some((a, b));
                        }
                    }
                }
                window.and_then(|w| self.in_window(text, w))
            }
        }
    }

    fn in_window<'t>(&self, text: &'t str, (a, b): (usize, usize)) -> Option<&'t str> {
        if a > b || b > text.len() || !self.re.is_match(Input::new(text).range(a..b)) {
            return None;
        }
        let m = self.re.find(Input::new(text).range(a..))?;
        Some(evidence(text, m.range()))
    }
}

/// Words at least one of which every match of the rule contains, for rules whose patterns
/// start with a word too short or too common to prefilter on ("is", "a", "i"). Each is one
/// word: a phrase would miss the same words across a line break. The unit test
/// `manual_triggers_occur_in_every_match` draws strings from each rule and checks; the
/// prefilter tests (`tests/fixtures.rs`, `tests/corpus.rs`) check that filtering changes no
/// decision on real mail.
fn manual_triggers(rule: &str) -> Option<&'static [&'static str]> {
    Some(match rule {
        "affected_by_cve" => &["affected", "vulnerable", "impacted", "exposed", "exploitable", "risk"],
        "whether_affected" => &["affected", "vulnerable", "impacted", "exploitable"],
        "support_question" => &["support", "plan", "roadmap", "compatible", "work", "ship"],
        "troubleshooting" => &["help", "change", "effect", "missing", "can", "restart"],
        "wants_to_know" => &["like", "want", "need", "wondering", "question", "trying", "looking"],
        "scanner_flagged_question" => &["scan", "sca"],
        "discovery" => &["found", "discovered", "identified", "noticed", "during"],
        "sql_payload" => &["=", "union", "sleep(", "waitfor"],
        "are_we_vulnerable" => &[
            "vulnerable",
            "affected",
            "risk",
            "exposed",
            "safe",
            "compromised",
            "hacked",
        ],
        "known_issue" => &["known"],
        "policy_request" => &[
            "policy",
            "process",
            "contact",
            "key",
            "fingerprint",
            "security.txt",
            "report",
            "address",
        ],
        "vendor_coordination" => &[
            "notif",
            "downstream",
            "advance",
            "response",
            "person",
            "contact",
            "address",
            "whoever",
        ],
        "findings_list" => &["vulnerabilit", "issues", "cves", "findings"],
        "is_it_a_bug" => &["bug"],
        "scan_report" => &[
            "scan",
            "automated",
            "plugin",
            "vulnerabilit",
            "risk",
            "alerts",
            "issues",
            "findings",
            "critical",
        ],
        "is_there_a_setting" => &["there", "gracefully"],
        "regression" => &[
            "regression",
            "used",
            "worked",
            "working",
            "longer",
            "stopped",
            "downgrad",
            "changed",
            "same",
            "fine",
        ],
        "not_working" => &[
            "n't", "doesnt", "dont", "wont", "cant", "couldnt", "not", "unable", "fail", "broken",
        ],
        "error_words" => &["exception", "error", "traceback", "stack", "caused"],
        "feature_request" => &["feature", "enhancement", "would", "add"],
        "bounty_enquiry" => &["bount", "reward", "payout", "hall", "compensation", "swag"],
        "recommendation" => &["recommend", "best", "correct", "right", "safest"],
        "configuration_help" => &["misconfigur", "config", "setup", "server.xml", "web.xml", "httpd.conf"],
        "academic_or_sales" => &[
            "thesis",
            "supervisor",
            "homework",
            "assignment",
            "student",
            "complimentary",
            "free",
            "call",
            "schedule",
            "demo",
            "business",
            "pricing",
            "penetration",
        ],
        "injection" => &["injection", "sqli", "ssti"],
        "http_request" => &["http/1", "http/2"],
        "report_sections" => &[
            "impact",
            "attack",
            "affected",
            "root",
            "vulnerability",
            "severity",
            "suggested",
        ],
        "command_line" => &[
            "curl", "wget", "nc", "netcat", "python", "perl", "ruby", "java", "openssl", "telnet",
        ],
        _ => return None,
    })
}

/// The literal prefixes every match of a rule starts with, when there is a small finite set
/// of them (each at least 3 bytes); `None` means the rule must always run.
fn literal_prefixes(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    let mut ex = Extractor::new();
    ex.kind(ExtractKind::Prefix)
        .limit_class(6)
        .limit_total(300)
        .limit_literal_len(12);
    let seq = ex.extract(hir);
    let lits = seq.literals()?;
    if lits.is_empty() || lits.iter().any(|l| l.as_bytes().len() < 3) {
        return None;
    }
    Some(lits.iter().map(|l| l.as_bytes().to_vec()).collect())
}

/// What the topic rules (and the router) read: the subject and the sender's own words of the
/// body, lowercased.
pub struct Text {
    /// The subject, lowercased.
    pub subject: String,
    /// The body without quoted lines and signature, lowercased.
    pub body: String,
    /// Stack-frame lines in `body`, counted as it was made.
    frames: usize,
    /// Lines of `body` ending with '?', counted as it was made.
    questions: usize,
}

impl Text {
    /// The text of a message.
    pub fn of(msg: &Inbound) -> Text {
        let mut text = Text {
            subject: lowercase(&msg.subject),
            body: String::new(),
            frames: 0,
            questions: 0,
        };
        own_words(msg.body(), &mut text);
        text
    }
}

/// Lowercase, cheaply for the common all-ASCII case.
fn lowercase(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        s.to_lowercase()
    }
}

/// The body, lowercased, without quoted lines (`>`) and without the signature, into
/// `text.body`; its line shapes into `text.frames` and `text.questions`.
fn own_words(body: &str, text: &mut Text) {
    let out = &mut text.body;
    out.reserve(body.len());
    for line in body.lines() {
        if line == "-- " {
            break;
        }
        if line.trim_start().starts_with('>') {
            continue;
        }
        let start = out.len();
        if line.is_ascii() {
            out.push_str(line);
            if let Some(added) = out.get_mut(start..) {
                added.make_ascii_lowercase();
            }
        } else {
            out.push_str(&line.to_lowercase());
        }
        if let Some(added) = out.get(start..) {
            Lines::shapes(added, &mut text.frames, &mut text.questions);
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use regex_syntax::hir::Class;

    use super::*;

    /// The windows around triggers must hold every match: draw matches of each windowed
    /// rule at full length (every repetition may run to its bound), set them in filler text,
    /// and check that the windowed search finds what the plain search finds.
    #[test]
    fn trigger_windows_hold_every_match() {
        let rules = TopicRules::new();
        let mut rng = fastrand::Rng::with_seed(0x3834);
        let filler = ["the ", "server ", "we ", "to ", "a\n", "version 9 ", "; ", "? ", "is "];
        let mut wrong = Vec::new();
        for (i, rule, c, hir) in windowed(&rules) {
            let mut matched = 0;
            for _ in 0..3000 {
                let mut raw = b"x\n".to_vec();
                for _ in 0..rng.usize(0..3) {
                    (0..rng.usize(0..40))
                        .for_each(|_| raw.extend_from_slice(filler[rng.usize(..filler.len())].as_bytes()));
                    sample_long(&hir, &mut rng, &mut raw);
                }
                raw.extend_from_slice(b"\nx");
                let text = String::from_utf8_lossy(&raw);
                let plain = whole(&c.re, &text);
                matched += usize::from(plain.is_some());
                let filtered = c.find(&text, rules.hits(&text).of(i));
                if filtered != plain {
                    wrong.push(format!("{}: {plain:?} but windows found {filtered:?}", rule.name));
                    break;
                }
            }
            if matched < 100 {
                wrong.push(format!("{}: only {matched} of 3000 texts matched", rule.name));
            }
        }
        assert!(wrong.is_empty(), "windowed search differs:\n{}", wrong.join("\n"));
    }

    /// As [`sample`], but each repetition runs anywhere up to its bound, often all the way.
    fn sample_long(hir: &Hir, rng: &mut fastrand::Rng, out: &mut Vec<u8>) {
        match hir.kind() {
            HirKind::Repetition(rep) => {
                let max = rep.max.unwrap_or(rep.min + 8);
                let n = if rng.bool() { max } else { rng.u32(rep.min..=max) };
                for _ in 0..n {
                    sample_long(&rep.sub, rng, out);
                }
            }
            // ASCII only: a byte that is not UTF-8 would become three in the text searched.
            HirKind::Class(Class::Bytes(c)) => {
                let ascii: Vec<(u8, u8)> = c
                    .ranges()
                    .iter()
                    .filter(|r| r.start() <= 0x7E && r.end() >= 0x09)
                    .map(|r| (r.start().max(0x09), r.end().min(0x7E)))
                    .collect();
                if let Some(&(a, b)) = ascii.get(rng.usize(..ascii.len().max(1))) {
                    out.push(rng.u8(a..=b));
                }
            }
            HirKind::Capture(cap) => sample_long(&cap.sub, rng, out),
            HirKind::Concat(parts) => parts.iter().for_each(|p| sample_long(p, rng, out)),
            HirKind::Alternation(alts) => {
                if let Some(a) = alts.get(rng.usize(..alts.len())) {
                    sample_long(a, rng, out);
                }
            }
            _ => sample(hir, rng, out),
        }
    }

    /// Every windowed rule: its index, the rule, its compiled form and its bounded pattern.
    fn windowed(rules: &TopicRules) -> Vec<(usize, &'static Rule, &Compiled, Hir)> {
        RULES
            .iter()
            .zip(&rules.rules)
            .enumerate()
            .filter(|(_, (_, c))| matches!(c.find, Find::Window { .. }))
            .map(|(i, (rule, c))| {
                let hir = regex_syntax::ParserBuilder::new()
                    .unicode(false)
                    .utf8(false)
                    .build()
                    .parse(&ascii_pattern(true, rule.pattern))
                    .expect("static rules parse");
                (i, rule, c, hir)
            })
            .collect()
    }

    /// A random string of the language of `hir` (assertions ignored: the caller keeps only
    /// samples the regex really matches).
    fn sample(hir: &Hir, rng: &mut fastrand::Rng, out: &mut Vec<u8>) {
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => {}
            HirKind::Literal(lit) => out.extend_from_slice(&lit.0),
            HirKind::Class(Class::Bytes(c)) => {
                if let Some(r) = c.ranges().get(rng.usize(..c.ranges().len().max(1))) {
                    out.push(rng.u8(r.start()..=r.end()));
                }
            }
            HirKind::Class(Class::Unicode(c)) => {
                if let Some(r) = c.ranges().get(rng.usize(..c.ranges().len().max(1))) {
                    let ch = rng.char(r.start()..=r.end());
                    out.extend_from_slice(ch.to_string().as_bytes());
                }
            }
            HirKind::Repetition(rep) => {
                let max = rep.max.unwrap_or(rep.min + 8).min(rep.min + 8);
                for _ in 0..rng.u32(rep.min..=max) {
                    sample(&rep.sub, rng, out);
                }
            }
            HirKind::Capture(cap) => sample(&cap.sub, rng, out),
            HirKind::Concat(parts) => parts.iter().for_each(|p| sample(p, rng, out)),
            HirKind::Alternation(alts) => {
                if let Some(a) = alts.get(rng.usize(..alts.len())) {
                    sample(a, rng, out);
                }
            }
        }
    }

    /// The hand-picked triggers of a windowed rule must occur in every match of it, or the
    /// filtered search misses matches the plain one finds (and a verdict changes). The fixture
    /// and corpus comparisons only see the strings those messages happen to contain; this
    /// draws thousands of strings from each rule's own pattern, on lines of their own so word
    /// boundaries and line anchors hold, and checks each match.
    #[test]
    fn manual_triggers_occur_in_every_match() {
        let rules = TopicRules::new();
        let mut rng = fastrand::Rng::with_seed(0x5ec1);
        let mut missing = Vec::new();
        for (_, rule, c, hir) in windowed(&rules) {
            let triggers: Vec<&[u8]> = if ends_with_question(&hir) {
                vec![b"?"]
            } else {
                manual_triggers(rule.name)
                    .unwrap_or_default()
                    .iter()
                    .map(|t| t.as_bytes())
                    .collect()
            };
            let mut matched = 0;
            for _ in 0..4000 {
                let mut text = b"x\n".to_vec();
                sample(&hir, &mut rng, &mut text);
                text.extend_from_slice(b"\nx");
                let Some(m) = c.re.find(Input::new(&text)) else {
                    continue;
                };
                matched += 1;
                let hit = text.get(m.range()).unwrap_or_default();
                if !triggers.iter().any(|t| memchr::memmem::find(hit, t).is_some()) {
                    missing.push(format!("{}: {:?}", rule.name, String::from_utf8_lossy(hit)));
                    matched = usize::MAX;
                    break;
                }
            }
            if matched < 100 {
                missing.push(format!("{}: only {matched} of 4000 samples matched", rule.name));
            }
        }
        assert!(missing.is_empty(), "matches without a trigger:\n{}", missing.join("\n"));
    }
}
