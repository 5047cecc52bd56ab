// Over-consumption alerts in the browser: toast and unread badge.
