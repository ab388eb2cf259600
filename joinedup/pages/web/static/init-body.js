// GOV.UK Frontend's progressive enhancement marker; every page works without it.
document.body.className += ' js-enabled' + ('noModule' in HTMLScriptElement.prototype ? ' govuk-frontend-supported' : '');
