//! Microsoft's well-known names: the authority and the scopes for SMTP and Graph. Kept apart
//! from the token requests so a build without them (no `oauth` feature) still knows them.

/// Microsoft's global authority (Entra ID). National clouds use their own, e.g.
/// `https://login.microsoftonline.us` or `https://login.chinacloudapi.cn`.
pub const MICROSOFT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The scope for SMTP AUTH to Exchange Online with an app-only token (permission
/// `SMTP.SendAsApp`).
pub const MICROSOFT_SMTP_SCOPE: &str = "https://outlook.office365.com/.default";

/// The scope for Microsoft Graph `sendMail` with an app-only token (permission `Mail.Send`).
pub const MICROSOFT_GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
