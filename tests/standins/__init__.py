"""Local stand-ins for Twilio, OpenAI and Salesforce that speak their real wire protocols."""
