"""Real-shaped DSNs (RFC 3464) and ARF complaints (RFC 5965), as mail servers send them."""

# What Postfix sends back for an unknown user, with the original message's headers.
POSTFIX_HARD = b"""\
Return-Path: <>
Received: by mx.example.net (Postfix) id 4F2A81C0A3; Thu, 12 Jun 2025 10:02:11 +0000 (UTC)
Date: Thu, 12 Jun 2025 10:02:11 +0000 (UTC)
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces@mail.shop.test
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4F2A81C0A3.1749722531/mx.example.net"
Message-Id: <20250612100211.4F2A81C0A3@mx.example.net>

This is a MIME-encapsulated message.

--4F2A81C0A3.1749722531/mx.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<nobody@example.net>: host mail.example.net[203.0.113.5] said: 550 5.1.1
    <nobody@example.net>: Recipient address rejected: User unknown in local
    recipient table (in reply to RCPT TO command)

--4F2A81C0A3.1749722531/mx.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 4F2A81C0A3
X-Postfix-Sender: rfc822; bounces@mail.shop.test
Arrival-Date: Thu, 12 Jun 2025 10:02:10 +0000 (UTC)

Final-Recipient: rfc822; nobody@example.net
Original-Recipient: rfc822;nobody@example.net
Action: failed
Status: 5.1.1
Remote-MTA: dns; mail.example.net
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.net>: Recipient address
    rejected: User unknown in local recipient table

--4F2A81C0A3.1749722531/mx.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <bounces@mail.shop.test>
From: Shop <hello@shop.test>
To: nobody@example.net
Subject: You left something in your cart
Message-ID: <nf.7f3a9c@shop.test>
X-Nudgeflow-Message-Key: run-81:cart-email:1
Date: Thu, 12 Jun 2025 10:02:09 +0000

--4F2A81C0A3.1749722531/mx.example.net--
"""

# Two recipients in one report: one delayed (soft), one delivered (skipped); the whole
# original message comes back as message/rfc822.
SENDMAIL_DELAYED = b"""\
From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.org>
To: <bounces@mail.shop.test>
Subject: Warning: could not send message for past 4 hours
MIME-Version: 1.0
Content-Type: multipart/report; report-type="delivery-status"; boundary="xyz.123"

--xyz.123
Content-Type: text/plain

Your message has not been delivered yet. It will be retried.

--xyz.123
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.org

Final-Recipient: RFC822; bob@busy.example.org
Action: delayed
Status: 4.2.2
Diagnostic-Code: SMTP; 452 4.2.2 Mailbox full
Will-Retry-Until: Fri, 13 Jun 2025 10:00:00 +0000

Final-Recipient: RFC822; carol@example.org
Action: delivered
Status: 2.0.0

--xyz.123
Content-Type: message/rfc822

From: Shop <hello@shop.test>
To: bob@busy.example.org, carol@example.org
Subject: Welcome
Message-ID: <nf.abc@shop.test>
X-Nudgeflow-Message-Key: run-9:welcome:1
MIME-Version: 1.0
Content-Type: text/plain

Hello!

--xyz.123--
"""

# A 5.x.x code on a report whose Action says failed but whose Status field is missing:
# the code is read from the Diagnostic-Code. No original headers: no key.
NO_STATUS_FIELD = b"""\
From: postmaster@example.com
To: bounces@mail.shop.test
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary=b1

--b1
Content-Type: text/plain

Delivery failed.
--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; example.com

Final-Recipient: rfc822; <gone@example.com>
Action: failed
Status:
Diagnostic-Code: smtp; 550 5.2.1 mailbox disabled
--b1--
"""

# Yahoo-style ARF complaint (RFC 5965 section 3 example shape).
ARF_ABUSE = b"""\
From: <abusedesk@example.com>
Date: Thu, 8 Mar 2005 17:40:36 EDT
Subject: FW: Earn money
To: <fbl@mail.shop.test>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.  For more information
about this format please see http://www.mipassoc.org/arf/.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <bounces@mail.shop.test>
Original-Rcpt-To: <dave@example.com>
Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT
Reported-Domain: shop.test
Source-IP: 192.0.2.1

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: <hello@shop.test>
Received: from mailserver.example.net (mailserver.example.net [192.0.2.1])
        by example.com with ESMTP id M63d4137594e46;
        Thu, 08 Mar 2005 14:00:00 -0400
To: <Undisclosed Recipients>
Subject: Earn money
MIME-Version: 1.0
Content-type: text/plain
Message-ID: <nf.8787KJKJ3K4J3K4J3K4J3.mail@shop.test>
X-Nudgeflow-Message-Key: run-3:promo:1
Date: Thu, 02 Sep 2004 12:31:03 -0500

Spam Spam Spam
--part1_13d.2e68ed54_boundary--
"""

# A redacted ARF (no Original-Rcpt-To): the recipient comes from the returned To.
ARF_REDACTED = b"""\
From: feedbackloop@isp.example
To: fbl@mail.shop.test
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="B"

--B
Content-Type: text/plain

A complaint.
--B
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ISP-FBL/2.0
Version: 1

--B
Content-Type: text/rfc822-headers

From: Shop <hello@shop.test>
To: Erin <erin@isp.example>
Subject: Sale
Message-ID: <nf.e@shop.test>

--B--
"""
